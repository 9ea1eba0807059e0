/*
 * LD_PRELOAD shim for `lbsim bench`: makes h2load do a full TLS handshake on every new connection.
 *
 * h2load keeps a connection's SSL object for the next connection when SSL_shutdown() returns 1 (a clean
 * close), and OpenSSL then resumes the session it holds: against a server that issues session tickets
 * (lbsim, nginx, mitmproxy) nearly every "new connection" would be a resumed handshake. Reporting 0 here
 * makes h2load free the SSL object, so the next connection starts without a session. close_notify is
 * still sent (the real SSL_shutdown runs).
 *
 *   cc -shared -fPIC -O2 -o full_handshakes.so full_handshakes.c -ldl
 *   LD_PRELOAD=./full_handshakes.so h2load --h1 -H 'Connection: close' ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>

int SSL_shutdown(void *ssl) {
    static int (*real)(void *);
    if (!real)
        real = (int (*)(void *))dlsym(RTLD_NEXT, "SSL_shutdown");
    int done = real(ssl);
    return done == 1 ? 0 : done;
}
