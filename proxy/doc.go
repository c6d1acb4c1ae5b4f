// Package proxy holds keygate's nginx and Traefik recipes (proxy/nginx,
// proxy/traefik); its tests check them, and envoy/envoy.yaml, against
// keygate's configuration: every recipe removes the same credential
// headers before the backend.
package proxy
