/*
 * hello.c: the C twin of examples/hello, byte for byte the same response.
 *
 * Prints "{greeting}, {name}!" where greeting is the GREETING environment
 * variable (default "Hello") and name is the percent-decoded "name"
 * parameter of QUERY_STRING (default "world"), cut to MAX_NAME bytes.
 * Invalid UTF-8 in either becomes U+FFFD, one per maximal ill-formed
 * subsequence, exactly as Rust's String::from_utf8_lossy does.
 *
 * Builds for WASI (clang --target=wasm32-wasi) and natively (cc), where it
 * runs as a plain CGI program under fcgiwrap for the benchmark.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest name kept, in bytes after percent-decoding. */
#define MAX_NAME 1024

static const char HEADER[] = "Content-Type: text/plain; charset=utf-8\r\n\r\n";
static const unsigned char REPLACEMENT[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Form-style percent-decoding of s[0..n) into out: '+' is a space, "%XY" is
 * the byte 0xXY, and a '%' not followed by two hex digits stays as it is.
 * Stops after cap output bytes; returns the number written.
 */
static size_t percent_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    size_t i = 0, o = 0;
    while (i < n && o < cap) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n) {
            int hi = hex_digit((unsigned char)s[i + 1]);
            int lo = hex_digit((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (unsigned char)(hi << 4 | lo);
                i += 2;
            }
        }
        out[o++] = c;
        i++;
    }
    return o;
}

/*
 * Finds the first "name" parameter of the query string q and decodes its
 * value into out (at most MAX_NAME bytes). Returns its length, or 0 when
 * there is none. A parameter without '=' has an empty value.
 */
static size_t name_param(const char *q, unsigned char *out)
{
    while (*q) {
        size_t len = strcspn(q, "&");
        size_t klen = strcspn(q, "=&");
        unsigned char key[5];
        /* Decoding at most 5 bytes tells "name" from anything longer. */
        if (percent_decode(q, klen, key, sizeof key) == 4 && memcmp(key, "name", 4) == 0) {
            if (klen == len)
                return 0;
            return percent_decode(q + klen + 1, len - klen - 1, out, MAX_NAME);
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

/*
 * Copies in[0..n) to out, replacing each maximal ill-formed UTF-8
 * subsequence with U+FFFD (Unicode's recommended practice, which Rust's
 * from_utf8_lossy follows). out needs room for 3 * n bytes.
 */
static size_t utf8_lossy(const unsigned char *in, size_t n, unsigned char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = in[i];
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
        size_t need, k;
        if (c < 0x80) {
            out[o++] = c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* no overlong forms */
            else if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* no overlong forms */
            else if (c == 0xF4)
                hi = 0x8F; /* nothing above U+10FFFF */
        } else {
            memcpy(out + o, REPLACEMENT, 3);
            o += 3;
            i++;
            continue;
        }
        /* k: bytes of the sequence that are well-formed so far. */
        for (k = 1; k <= need && i + k < n; k++) {
            unsigned char b = in[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
                break;
        }
        if (k == need + 1) {
            memcpy(out + o, in + i, k);
            o += k;
        } else {
            memcpy(out + o, REPLACEMENT, 3);
            o += 3;
        }
        i += k;
    }
    return o;
}

int main(void)
{
    const char *greeting = getenv("GREETING");
    const char *query = getenv("QUERY_STRING");
    unsigned char name[MAX_NAME];
    size_t name_len = query ? name_param(query, name) : 0;
    size_t greeting_len;
    unsigned char *buf, *p;
    int ok;

    if (!greeting || !*greeting)
        greeting = "Hello";
    if (name_len == 0) {
        memcpy(name, "world", 5);
        name_len = 5;
    }
    greeting_len = strlen(greeting);

    /* The whole response, to go out in one write. */
    buf = malloc(sizeof HEADER + 3 * greeting_len + 3 * name_len + 4);
    if (!buf)
        return 1;
    p = buf;
    memcpy(p, HEADER, sizeof HEADER - 1);
    p += sizeof HEADER - 1;
    p += utf8_lossy((const unsigned char *)greeting, greeting_len, p);
    *p++ = ',';
    *p++ = ' ';
    p += utf8_lossy(name, name_len, p);
    *p++ = '!';
    *p++ = '\n';

    ok = fwrite(buf, 1, (size_t)(p - buf), stdout) == (size_t)(p - buf);
    ok = fflush(stdout) == 0 && ok;
    free(buf);
    return ok ? 0 : 1;
}
