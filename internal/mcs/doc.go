// Package mcs is the contract between the DNS plugin and the controller, which never import each
// other: the KEP-1645 label and annotation keys, the rule that names a derived Service, the MCS
// API versions and the one loop that finds which of them an apiserver serves (Supervise), and a
// version-agnostic view of ServiceExports and ServiceImports: whatever version a cluster serves
// (v1alpha1, v1beta1), both sides read and write mcs-api's v1beta1 Go types.
package mcs
