"""tufnotary's client: the publisher and consumer library and the `tufnotary` CLI.

Library entry points: `keys.KeyStore`, `publisher.Publisher`, `consumer.Consumer`,
`http.ServerClient`, `trustdir.TrustDir`; errors derive from `errors.ClientError`.
"""
