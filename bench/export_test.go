package bench

// NeedPackages is needPackages for the external tests.
var NeedPackages = needPackages
