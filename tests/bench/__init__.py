"""The benchmark harness of issue 8 (`make bench`): workloads against our stack and, with
`--compare notary`, against Debian's notary 0.7.0 stack on the same machine. Not part of `make test`."""
