// Package clusterset gives integration and e2e tests the local clusterset (real etcd, three real
// kube-apiservers, real Karmada, two members with kwok nodes): it brings it up with
// hack/clusterset.sh when it is not running, or reuses the running one, and hands out clients,
// kubectl and polling helpers.
package clusterset
