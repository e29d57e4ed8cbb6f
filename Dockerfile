# Images for coredns-mcs and the MCS controller: static binaries on a distroless, non-root base.
#   docker build --target coredns-mcs -t coredns-mcs/coredns-mcs:latest .
#   docker build --target mcs-controller -t coredns-mcs/mcs-controller:latest .
# (`make image` does both, with docker or podman.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${VERSION}" \
      -o /out/ ./cmd/coredns-mcs ./cmd/mcs-controller

FROM gcr.io/distroless/static-debian12:nonroot AS coredns-mcs
COPY --from=build /out/coredns-mcs /coredns-mcs
USER 65532:65532
EXPOSE 53 53/udp 8080 8181 9153
ENTRYPOINT ["/coredns-mcs"]

FROM gcr.io/distroless/static-debian12:nonroot AS mcs-controller
COPY --from=build /out/mcs-controller /mcs-controller
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/mcs-controller"]
