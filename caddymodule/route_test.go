package caddymodule

import "testing"

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
