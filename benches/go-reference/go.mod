module worker-pool-go-reference

go 1.22
