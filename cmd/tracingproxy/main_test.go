package main

import (
	"os"
	"testing"
)

// execEnv, set in the environment, makes this test binary run the
// tracingproxy command line with its arguments instead of the tests
// (runCLI).
const execEnv = "TRACINGPROXY_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
