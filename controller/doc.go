// Package controller is the MCS controller that runs beside the Karmada control plane: it watches
// ServiceExports, their Services and EndpointSlices in every member, and writes `derived-<svc>`
// Services, mirrored EndpointSlices and (automatic imports) ServiceImports into the members that
// import the service, through Karmada Work objects, with ServiceExport and ServiceImport status.
//
// Its rooms, each with one job:
//
//   - controller.go: the Controller, its caches of the Karmada control plane, and its two
//     controller-runtime controllers (services, clusters).
//   - memberset.go, member.go: the member set (joins, credentials, leaves) and one member's
//     clients and caches; pull.go: a Pull-mode member, read from its agent's reports
//     (internal/report) and given its status through status Works; failure.go: the member
//     failure policy (drain or keep), from Karmada's Ready and a Pull member's agent lease.
//   - agent/: the mcs-agent that runs in a Pull-mode member (cmd/mcs-agent).
//   - templates.go: ServiceExport and ServiceImport templates on the Karmada control plane.
//   - reconcile.go: one service, observe → desired → apply → status.
//   - observe.go: what the caches say about one service (valid exports, importers, automatic
//     imports), without a request.
//   - desired.go: the Works the service needs (pure).
//   - works.go, orphans.go: the Work applier, which holds every quirk of Karmada's execution
//     controller, and the adoption of derived objects no Work holds.
//   - status.go: the conditions (pure); statuswrite.go: their writers and Warning events;
//     statusqueue.go: one status writer per cluster, off the reconcile workers.
package controller
