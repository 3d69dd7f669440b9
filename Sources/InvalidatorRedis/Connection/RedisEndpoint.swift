import InvalidatorCore

/// The address of one Redis node: the configuration's own address type.
package typealias RedisEndpoint = HostPort
