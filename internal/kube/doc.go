// Package kube holds the small client-go helpers the DNS plugin and the controller share.
package kube
