"""tufnotary signer: holds the online (timestamp, snapshot) keys of every collection and signs with them
over gRPC with mutual TLS. Shares only `tufnotary.proto` with the metadata server."""
