#include "tls/tls.h"

#include <errno.h>

#include <openssl/err.h>

#include "core/log.h"

/* The thread's OpenSSL error queue is kept empty between calls: every
 * failure here drains it (a refused handshake once its reason was read, see
 * tls_reason_from_handshake()), and a handshake clears what OpenSSL may have
 * left behind on success. So tls_read() and tls_write(), called for every
 * record, skip the ERR_clear_error() before the call (a thread-local lookup
 * and 16 slots cleared each time). */

/* A call that stopped at a socket that would block: what SSL_get_error(3)
 * answers then, without looking at the error queue. */
static bool want_io(SSL *ssl, enum tls_want *want)
{
    if (SSL_want_read(ssl) && BIO_should_read(SSL_get_rbio(ssl))) {
        *want = TLS_WANT_READ;
        return true;
    }
    if (SSL_want_write(ssl) && BIO_should_write(SSL_get_wbio(ssl))) {
        *want = TLS_WANT_WRITE;
        return true;
    }
    return false;
}

/* Maps the outcome of an SSL call to a status; see SSL_get_error(3). */
static enum tg_status map_result(SSL *ssl, int rc, enum tls_want *want)
{
    *want = TLS_WANT_NONE;
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        *want = TLS_WANT_READ;
        return TG_E_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = TLS_WANT_WRITE;
        return TG_E_AGAIN;
    case SSL_ERROR_WANT_ASYNC:
        /* The verify callback paused the handshake's job for an OCSP
         * lookup (ctx.c); only calling again resumes it. */
        *want = TLS_WANT_OCSP;
        return TG_E_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return TG_E_CLOSED;
    case SSL_ERROR_SYSCALL:
        /* With SSL_OP_IGNORE_UNEXPECTED_EOF a bare EOF is ZERO_RETURN, so
         * this is a reset or another socket error. */
        if (ERR_peek_error() == 0 && (errno == EAGAIN || errno == EINTR)) {
            *want = TLS_WANT_READ;
            return TG_E_AGAIN;
        }
        return ERR_peek_error() == 0 && errno == ECONNRESET ? TG_E_RESET : TG_E_CLOSED;
    default:
        return TG_E_PROTO;
    }
}

enum tg_status tls_handshake(SSL *ssl, enum tls_want *want)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) {
        *want = TLS_WANT_NONE;
        ERR_clear_error();
        /* Reads and writes need no job: they never wait for a lookup. */
        SSL_clear_mode(ssl, SSL_MODE_ASYNC);
        return TG_OK;
    }
    enum tg_status st = map_result(ssl, rc, want);
    /* A peer that vanishes mid-handshake is a refused handshake too. */
    return st == TG_E_CLOSED || st == TG_E_RESET ? TG_E_PROTO : st;
}

/* Records in the bool given to tls_report_reads() whether the socket's last
 * read() emptied it: it failed (EAGAIN, EOF) or got less than asked for. */
static long sock_read_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                         int ret, size_t *processed)
{
    (void)argp;
    (void)argi;
    (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        bool *drained = (bool *)BIO_get_callback_arg(b);
        *drained = ret <= 0 || processed == NULL || *processed < len;
    }
    return ret;
}

void tls_report_reads(SSL *ssl, bool *drained)
{
    BIO *rbio = SSL_get_rbio(ssl);
    *drained = false;
    BIO_set_callback_arg(rbio, (char *)drained);
    BIO_set_callback_ex(rbio, sock_read_cb);
}

enum tg_status tls_read(SSL *ssl, void *dst, size_t len, size_t *n, enum tls_want *want)
{
    *n = 0;
    int rc = SSL_read_ex(ssl, dst, len, n);
    if (rc == 1) {
        *want = TLS_WANT_NONE;
        return TG_OK;
    }
    if (want_io(ssl, want))
        return TG_E_AGAIN;
    enum tg_status st = map_result(ssl, rc, want);
    ERR_clear_error();
    return st;
}

enum tg_status tls_write(SSL *ssl, const void *src, size_t len, size_t *n, enum tls_want *want)
{
    *n = 0;
    int rc = SSL_write_ex(ssl, src, len, n);
    if (rc == 1) {
        *want = TLS_WANT_NONE;
        return TG_OK;
    }
    if (want_io(ssl, want))
        return TG_E_AGAIN;
    enum tg_status st = map_result(ssl, rc, want);
    ERR_clear_error();
    return st;
}

enum tg_status tls_shutdown(SSL *ssl, enum tls_want *want)
{
    *want = TLS_WANT_NONE;
    if (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)
        return TG_OK;
    ERR_clear_error();
    int rc = SSL_shutdown(ssl);
    if (rc >= 0)
        return TG_OK; /* 0: sent, the peer's close_notify not seen yet: fine */
    enum tg_status st = map_result(ssl, rc, want);
    ERR_clear_error();
    return st == TG_E_AGAIN ? st : TG_E_CLOSED;
}
