# keygate image: static binary on distroless, non-root.
#   docker build -t ghcr.io/keygate/keygate:$(git describe --tags --always) --build-arg VERSION=$(git describe --tags --always) .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -tags vtprotobuf -trimpath \
      -ldflags "-s -w -X github.com/keygate/keygate/internal/cli.version=${VERSION}" \
      -o /out/keygate ./cmd/keygate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keygate /keygate
USER nonroot:nonroot
# gRPC ext_authz, admin HTTP (/metrics, /healthz, /readyz).
EXPOSE 9191 9090
ENTRYPOINT ["/keygate"]
CMD ["serve"]
