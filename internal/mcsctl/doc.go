// Package mcsctl is `kubectl mcs`: the fleet's multi-cluster services as the operator needs to see
// them. status lists the members as Karmada and the controller see them and every exported
// service with its exporters, importers, conditions and endpoint counts; explain walks one
// service from its ServiceExports to the DNS answer in each importer and says in one line where
// the path breaks.
package mcsctl
