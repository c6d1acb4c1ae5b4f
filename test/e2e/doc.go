// Package e2e holds keygate's end-to-end tests: a real nats-server, keygate
// in its HTTP authorization mode, real nginx running the shipped
// proxy/nginx config, a small OpenAI-shaped backend, and the official
// OpenAI SDKs for Go and Node calling through nginx; and keygate behind the
// shipped Traefik and Envoy recipes, as those proxies would ask it.
//
// Install what they need with ./deps.sh, then run `go test -race -count=1 ./...`
// here.
package e2e
