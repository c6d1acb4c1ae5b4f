// Package envoy holds keygate's shipped Envoy configuration; its tests validate it.
package envoy
