/*
 * wasi-shims.h: what a legacy C CGI program needs to make temporary files
 * under WASI and that Debian's wasi-libc (0.0~git20220510) does not have.
 *
 * That wasi-libc leaves mkstemp, mkostemp and mkdtemp out of <stdlib.h>
 * ("WASI has no temp directories"), and tmpfile is declared but deprecated
 * ("not defined on WASI"). wcgid gives every guest a private, writable /tmp
 * (named by TMPDIR), so a temporary file is what mkstemp always made: a new
 * name opened with O_CREAT|O_EXCL. This header does that when compiled for
 * WASI; elsewhere the C library's own mkstemp is used.
 *
 * Include it after <stdlib.h>. Only mkstemp is provided: the one call the
 * example needs; mkdtemp would be mkdir(2) in the same loop.
 */
#ifndef WASI_SHIMS_H
#define WASI_SHIMS_H

#ifdef __wasi__
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/*
 * mkstemp(3): replaces the trailing "XXXXXX" of template with random
 * letters and digits (from getentropy, i.e. WASI's random_get) until
 * open(O_CREAT|O_EXCL) makes a new file, and returns it open for reading
 * and writing. EINVAL if template does not end in "XXXXXX"; EEXIST after
 * 100 names taken.
 */
static int wasi_mkstemp(char *template)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t len = strlen(template);
    if (len < 6 || strcmp(template + len - 6, "XXXXXX") != 0) {
        errno = EINVAL;
        return -1;
    }
    for (int tries = 0; tries < 100; tries++) {
        unsigned char random[6];
        if (getentropy(random, sizeof random) != 0)
            return -1;
        for (int i = 0; i < 6; i++)
            template[len - 6 + i] = letters[random[i] % (sizeof letters - 1)];
        int fd = open(template, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}
#define mkstemp wasi_mkstemp
#endif

#endif
