/*
 * upload.c: a file upload handled the way legacy CGI programs do it. It
 * reads a multipart/form-data POST body (RFC 7578) from stdin, spools the
 * content of the first part that carries a filename to a temporary file
 * made with mkstemp under $TMPDIR (default /tmp), then reads that file back
 * to report its size and FNV-1a 64-bit hash, and how many entries the
 * temporary directory held when the request began.
 *
 * The body is parsed as it arrives, in constant memory: only a part's
 * header block and the few bytes that could begin a boundary are held.
 * The temporary file is left behind, as careless scripts leave theirs:
 * under wcgid the next request must not see it.
 *
 * Every failure is answered with a CGI status and a line saying what
 * failed, with strerror(errno) when a call did: a full /tmp answers
 * "500 ... No space left on device".
 *
 * Builds for WASI (clang --target=wasm32-wasi, with wasi-shims.h for
 * mkstemp) and natively (cc).
 */

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "wasi-shims.h"

/* Bytes read from stdin at a time. */
#define CHUNK 65536
/* Longest header block of a part. */
#define MAX_HEAD 8192
/* Longest boundary (RFC 2046 §5.1.1). */
#define MAX_BOUNDARY 70

static const char *const BAD_REQUEST = "400 Bad Request";
static const char *const FAILED = "500 Internal Server Error";

/* The body as it is parsed: buf[0..len) not consumed yet. */
static unsigned char buf[CHUNK + MAX_HEAD];
static size_t len;
/* Body bytes still to read (CONTENT_LENGTH). */
static unsigned long long unread;

/* Answers with `status` and "what: why", then exits. */
static void fail(const char *status, const char *what, const char *why)
{
    printf("Status: %s\r\nContent-Type: text/plain\r\n\r\n%s: %s\n", status, what, why);
    exit(0);
}

/* Reads more of the body after buf[0..len); returns how much. */
static size_t fill(void)
{
    size_t want = sizeof buf - len;
    if (want > unread)
        want = (size_t)unread;
    size_t n = fread(buf + len, 1, want, stdin);
    if (n < want && ferror(stdin))
        fail(FAILED, "read stdin", strerror(errno));
    len += n;
    unread -= n;
    return n;
}

static void consume(size_t n)
{
    memmove(buf, buf + n, len - n);
    len -= n;
}

/* Where needle first occurs in buf[0..len), or -1. */
static long find(const unsigned char *needle, size_t n)
{
    for (size_t i = 0; n <= len && i <= len - n; i++) {
        if (buf[i] == needle[0] && memcmp(buf + i, needle, n) == 0)
            return (long)i;
    }
    return -1;
}

/*
 * Passes the body up to the next delimiter to `out` (or drops it when out
 * is NULL) and consumes the delimiter. Only the bytes that could begin a
 * delimiter are held back between reads.
 */
static void copy_to_delimiter(const unsigned char *delim, size_t n, FILE *out, const char *path)
{
    for (;;) {
        long at = find(delim, n);
        size_t safe = at >= 0 ? (size_t)at : len >= n ? len - (n - 1) : 0;
        if (out != NULL && safe > 0 && fwrite(buf, 1, safe, out) != safe)
            fail(FAILED, path, strerror(errno));
        consume(safe);
        if (at >= 0) {
            consume(n);
            return;
        }
        if (fill() == 0)
            fail(BAD_REQUEST, "body", "it ends before the next boundary");
    }
}

/*
 * The value of parameter `name` (e.g. "boundary") in a header value like
 * `multipart/form-data; boundary="x y"`, into out[0..cap); 0 if absent.
 */
static int parameter(const char *header, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = header; (p = strchr(p, ';')) != NULL;) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, name, n) != 0 || p[n] != '=')
            continue;
        p += n + 1;
        size_t i = 0;
        if (*p == '"') {
            for (p++; *p && *p != '"' && i + 1 < cap; p++)
                out[i++] = *p;
        } else {
            for (; *p && *p != ';' && *p != ' ' && *p != '\r' && i + 1 < cap; p++)
                out[i++] = *p;
        }
        out[i] = '\0';
        return 1;
    }
    return 0;
}

/* Counts (and lists) the entries of `dir` but "." and "..". */
static int entries(const char *dir, char *names, size_t cap)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        fail(FAILED, dir, strerror(errno));
    int count = 0;
    size_t used = 0;
    names[0] = '\0';
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        count++;
        int n = snprintf(names + used, cap - used, "tmp-entry=%s\n", e->d_name);
        if (n > 0 && (size_t)n < cap - used)
            used += (size_t)n;
    }
    closedir(d);
    return count;
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR");
    if (tmpdir == NULL || *tmpdir == '\0')
        tmpdir = "/tmp";
    static char listing[4096];
    int at_start = entries(tmpdir, listing, sizeof listing);

    const char *method = getenv("REQUEST_METHOD");
    if (method == NULL || strcmp(method, "POST") != 0)
        fail("405 Method Not Allowed", "method", "POST a multipart/form-data body");
    const char *type = getenv("CONTENT_TYPE");
    char boundary[MAX_BOUNDARY + 1];
    if (type == NULL || strncasecmp(type, "multipart/form-data", 19) != 0 ||
        !parameter(type, "boundary", boundary, sizeof boundary) || boundary[0] == '\0')
        fail(BAD_REQUEST, "CONTENT_TYPE", "not multipart/form-data with a boundary");
    const char *length = getenv("CONTENT_LENGTH");
    unread = length != NULL ? strtoull(length, NULL, 10) : 0;

    /* Each delimiter is CRLF "--" boundary; the body's first one has no
     * CRLF before it, so one is put in front. */
    unsigned char delim[MAX_BOUNDARY + 4];
    size_t n = (size_t)snprintf((char *)delim, sizeof delim, "\r\n--%s", boundary);
    memcpy(buf, "\r\n", 2);
    len = 2;
    copy_to_delimiter(delim, n, NULL, NULL);

    for (;;) {
        while (len < 2 && fill() > 0) {
        }
        if (len < 2 || memcmp(buf, "--", 2) == 0)
            fail(BAD_REQUEST, "body", "no part with a filename");
        /* The part's header block: from the CRLF that ends the delimiter's
         * line to the blank line (so an empty block is found too). */
        long end;
        while ((end = find((const unsigned char *)"\r\n\r\n", 4)) < 0 && len < MAX_HEAD && fill() > 0) {
        }
        if (end < 0 || end > MAX_HEAD)
            fail(BAD_REQUEST, "body", "a part's header block is cut or too long");
        char head[MAX_HEAD + 1];
        memcpy(head, buf, (size_t)end);
        head[end] = '\0';
        consume((size_t)end + 4);
        char filename[256];
        const char *disposition = NULL;
        for (char *line = head; line != NULL;) {
            char *next = strstr(line, "\r\n");
            if (next != NULL)
                *next = '\0';
            if (strncasecmp(line, "Content-Disposition:", 20) == 0)
                disposition = line + 20;
            line = next != NULL ? next + 2 : NULL;
        }
        if (disposition == NULL || !parameter(disposition, "filename", filename, sizeof filename)) {
            copy_to_delimiter(delim, n, NULL, NULL);
            continue;
        }

        char path[4096];
        snprintf(path, sizeof path, "%s/uploadXXXXXX", tmpdir);
        int fd = mkstemp(path);
        if (fd < 0)
            fail(FAILED, "mkstemp", strerror(errno));
        FILE *spool = fdopen(fd, "w+b");
        if (spool == NULL)
            fail(FAILED, "fdopen", strerror(errno));
        copy_to_delimiter(delim, n, spool, path);
        if (fflush(spool) != 0)
            fail(FAILED, path, strerror(errno));

        /* Read back what was spooled. */
        rewind(spool);
        uint64_t hash = 0xcbf29ce484222325u, size = 0;
        size_t got;
        while ((got = fread(buf, 1, CHUNK, spool)) > 0) {
            for (size_t i = 0; i < got; i++)
                hash = (hash ^ buf[i]) * 0x100000001b3u;
            size += got;
        }
        if (ferror(spool))
            fail(FAILED, path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) != 0)
            fail(FAILED, path, strerror(errno));
        if ((uint64_t)st.st_size != size)
            fail(FAILED, path, "its size is not what was read back");
        fclose(spool);

        printf("Content-Type: text/plain\r\n\r\n"
               "name=%s size=%" PRIu64 " fnv1a=%016" PRIx64 "\n"
               "tmp-at-start=%d\n%s",
               filename, size, hash, at_start, listing);
        return 0;
    }
}
