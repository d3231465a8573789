package caddymodule

import (
	"strings"
	"testing"
)

func TestRouteOf(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"/":                    "/",
		"":                     "",
		"/orders":              "/orders",
		"/orders/1234":         "/orders/{id}",
		"/orders/1234/items/7": "/orders/{id}/items/{id}",
		"/orders/1234/":        "/orders/{id}/",
		"/u/0b7e3f52-9c1d-4a8e-b2f1-3d4c5e6f7a8b/cart": "/u/{id}/cart",
		"/blob/9f86d081884c7d659a2feaa0c55ad015":       "/blob/{id}",
		"/t/dGhpcyBpcyBhIHRva2VuMTIz":                  "/t/{id}",
		"/api/v2/users":                                "/api/v2/users",
		"/configuration-settings-page":                 "/configuration-settings-page",
		"/cafe":                                        "/cafe",
		"/deadbeef":                                    "/deadbeef",
		"/deadbeefcafebabeface":                        "/deadbeefcafebabeface",
		"/files/report.pdf":                            "/files/report.pdf",
		"//orders//42":                                 "//orders//{id}",
	}
	for in, want := range tests {
		if got := routeOf(in); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRouteOfAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = routeOf("/api/v2/orders/items") }); n != 0 {
		t.Errorf("routeOf without ids allocated %v times", n)
	}
}

func TestRoutePatternMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/orders/{id}/items", "/orders/42/items", true},
		{"/orders/{id}/items", "/orders/abc/items", true},
		{"/orders/{id}/items", "/orders/42/items/7", false},
		{"/orders/{id}/items", "/orders/42", false},
		{"/orders/{id}/items", "/orders//items", false},
		{"/orders/{id}", "/orders/42/", false},
		{"/orders/{id}/", "/orders/42/", true},
		{"/api/*", "/api/", true},
		{"/api/*", "/api/a/b/c", true},
		{"/api/*", "/api", true},
		{"/api/*", "/apix", false},
		{"/", "/", true},
		{"/", "/x", false},
		{"/health", "/health", true},
		{"/health", "/Health", false},
		{"/orders", "orders", false},
	}
	for _, tt := range tests {
		rp, err := compileRoute(tt.pattern)
		if err != nil {
			t.Fatalf("compileRoute(%q): %v", tt.pattern, err)
		}
		if got := rp.match(tt.path); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestRoutePatternInvalid(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"orders/{id}", "/api/*/x", "/a/{id", "/a/x{id}", "/a/{}", "/a/{b{c}}", "/a/b*"} {
		if _, err := compileRoute(p); err == nil || !strings.HasPrefix(err.Error(), "route: ") {
			t.Errorf("compileRoute(%q) = %v, want an error naming the route option", p, err)
		}
	}
}

func TestRoutePatternMatchAllocs(t *testing.T) {
	rp, err := compileRoute("/orders/{id}/items/*")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = rp.match("/orders/42/items/7/x") }); n != 0 {
		t.Errorf("match allocated %v times", n)
	}
}
