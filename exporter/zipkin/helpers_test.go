package zipkin

// deref reads an optional string field of a decoded span.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
