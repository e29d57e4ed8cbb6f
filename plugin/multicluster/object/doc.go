// Package object holds the slim forms of the API objects the multicluster plugin reads. Informers
// convert every object to one of these at ingest (a cache.TransformFunc), so the caches hold only
// what DNS answers need, never whole ServiceImports, EndpointSlices or Services.
package object
