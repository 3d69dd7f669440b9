import InvalidatorCore

/// The address of one Redis node: the configuration's own address type.
public typealias RedisEndpoint = HostPort
