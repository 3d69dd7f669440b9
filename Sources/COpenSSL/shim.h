#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

// Function-like macros do not reach Swift; these wrap the ones the Redis
// connection needs.

static inline long copenssl_set_server_name_indication(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}

// A write may return after part of the buffer, and be retried with the rest
// from a buffer that moved: how a non-blocking socket is written.
static inline long copenssl_enable_partial_writes(SSL_CTX *context) {
    return SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

static inline int copenssl_set_minimum_tls12(SSL_CTX *context) {
    return (int)SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
}

// The peer closed the connection without a TLS close_notify: a network failure,
// which OpenSSL 3 reports as a protocol error.
static inline int copenssl_is_unexpected_eof(unsigned long error) {
    return ERR_GET_LIB(error) == ERR_LIB_SSL && ERR_GET_REASON(error) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}
