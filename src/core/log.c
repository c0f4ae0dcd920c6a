#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level g_level = LOG_LEVEL_INFO;
static int g_access_fd = -1; /* -1: off; 1: stdout; else owned */
static char g_access_path[4096];
static bool g_access_failed;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
    g_level = level;
}

enum log_level log_get_level(void)
{
    return g_level;
}

static int cached_pid;

static void pid_forget(void)
{
    cached_pid = 0;
}

int tg_pid(void)
{
    static bool registered;
    if (!registered) {
        registered = true;
        (void)pthread_atfork(NULL, NULL, pid_forget);
    }
    if (cached_pid == 0)
        cached_pid = (int)getpid();
    return cached_pid;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > g_level)
        return;
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s pid=%d ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(tv.tv_usec / 1000), level_names[level], tg_pid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* One write per line so that lines from several processes never interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

static int access_open_fd(const char *dest)
{
    if (strcmp(dest, "off") == 0)
        return -1;
    if (strcmp(dest, "stdout") == 0)
        return STDOUT_FILENO;
    return open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

enum tg_status log_access_open(const char *dest)
{
    int fd = access_open_fd(dest);
    if (fd == -1 && strcmp(dest, "off") != 0) {
        log_err("event=access_log_open path=%s error=\"%s\"", dest, strerror(errno));
        return TG_E_INTERNAL;
    }
    if (g_access_fd > STDERR_FILENO)
        close(g_access_fd);
    g_access_fd = fd;
    snprintf(g_access_path, sizeof(g_access_path), "%s", dest);
    g_access_failed = false;
    return TG_OK;
}

void log_access_reopen(void)
{
    if (g_access_fd <= STDERR_FILENO)
        return;
    int fd = access_open_fd(g_access_path);
    if (fd < 0) {
        log_err("event=access_log_reopen path=%s error=\"%s\"", g_access_path, strerror(errno));
        return;
    }
    close(g_access_fd);
    g_access_fd = fd;
    g_access_failed = false;
    log_info("event=access_log_reopened path=%s", g_access_path);
}

bool log_access_enabled(void)
{
    return g_access_fd >= 0;
}

void log_access_write(const char *line, size_t len)
{
    if (g_access_fd < 0)
        return;
    char buf[8192];
    if (len > sizeof(buf) - 1)
        len = sizeof(buf) - 1;
    memcpy(buf, line, len);
    buf[len++] = '\n';
    ssize_t w = write(g_access_fd, buf, len);
    if (w != (ssize_t)len) {
        if (!g_access_failed)
            log_err("event=access_log_write path=%s error=\"%s\"", g_access_path,
                    w < 0 ? strerror(errno) : "short write");
        g_access_failed = true;
    } else {
        g_access_failed = false;
    }
}

size_t log_utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        len = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        len = 4;
    else
        return 0;
    if (p[0] == 0xe0)
        lo = 0xa0;
    else if (p[0] == 0xed)
        hi = 0x9f;
    else if (p[0] == 0xf0)
        lo = 0x90;
    else if (p[0] == 0xf4)
        hi = 0x8f;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

size_t log_json_escape(char *dst, size_t dst_len, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (dst_len == 0)
        return 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t left = strlen((const char *)p);
    while (left > 0) {
        char tmp[7];
        const char *out = tmp;
        size_t n = 0, used = 1;
        if (*p == '"' || *p == '\\') {
            tmp[n++] = '\\';
            tmp[n++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            memcpy(tmp, "\\u00", 4);
            tmp[4] = hex[*p >> 4];
            tmp[5] = hex[*p & 15];
            n = 6;
        } else if (*p < 0x80) {
            tmp[n++] = (char)*p;
        } else if ((used = log_utf8_len(p, left)) > 0) {
            /* C1 controls (NEL among them) and U+2028/U+2029 end a line
             * for some readers: escaped like the C0 ones. */
            unsigned cp = 0;
            if (used == 2 && p[0] == 0xc2 && p[1] < 0xa0)
                cp = p[1];
            else if (used == 3 && p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
                cp = 0x2000u | (p[2] & 0x3fu); /* U+2028, U+2029 */
            if (cp != 0) {
                memcpy(tmp, "\\u", 2);
                for (int k = 0; k < 4; k++)
                    tmp[2 + k] = hex[(cp >> (12 - 4 * k)) & 15];
                n = 6;
            } else {
                out = (const char *)p;
                n = used;
            }
        } else {
            /* A byte that is not part of well-formed UTF-8: U+FFFD, so the
             * line stays valid JSON whatever the peer sent. */
            memcpy(tmp, "\\ufffd", 6);
            n = 6;
            used = 1;
        }
        if (o + n >= dst_len)
            break;
        memcpy(dst + o, out, n);
        o += n;
        p += used;
        left -= used;
    }
    dst[o] = '\0';
    return o;
}

/* A byte that may stand in a key=value field as it is. */
static bool kv_plain(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\' && ch != '=';
}

/* The escaped form of ch inside quotes into tmp (4 bytes); its length. */
static size_t kv_quoted_char(unsigned char ch, char *tmp)
{
    static const char hex[] = "0123456789abcdef";
    if (ch == '"' || ch == '\\') {
        tmp[0] = '\\';
        tmp[1] = (char)ch;
        return 2;
    }
    if (ch >= 0x20 && ch < 0x7f) {
        tmp[0] = (char)ch;
        return 1;
    }
    tmp[0] = '\\';
    tmp[1] = 'x';
    tmp[2] = hex[ch >> 4];
    tmp[3] = hex[ch & 15];
    return 4;
}

size_t log_kv_escape(char *dst, size_t dst_len, const char *src, size_t src_len)
{
    /* Never produced by escaping (a backslash from the peer is doubled). */
    static const char cut[] = "\\...\"";
    const unsigned char *s = (const unsigned char *)(src ? src : "");
    if (src == NULL)
        src_len = 0;
    if (dst_len < LOG_KV_MIN) {
        if (dst_len > 0)
            dst[0] = '\0';
        return 0;
    }
    bool quote = src_len == 0;
    size_t need = 2; /* the quotes */
    char tmp[4];
    for (size_t i = 0; i < src_len; i++) {
        quote = quote || !kv_plain(s[i]);
        need += kv_quoted_char(s[i], tmp);
    }
    if (!quote && src_len < dst_len) {
        memcpy(dst, s, src_len);
        dst[src_len] = '\0';
        return src_len;
    }
    bool is_cut = need >= dst_len;
    /* What must still fit after the escaped bytes: the closing quote, or
     * the marker (which ends in a quote); and the NUL. */
    size_t tail = is_cut ? sizeof(cut) : 2;
    size_t o = 0;
    dst[o++] = '"';
    for (size_t i = 0; i < src_len; i++) {
        size_t n = kv_quoted_char(s[i], tmp);
        if (o + n + tail > dst_len)
            break;
        memcpy(dst + o, tmp, n);
        o += n;
    }
    if (is_cut) {
        memcpy(dst + o, cut, sizeof(cut));
        return o + sizeof(cut) - 1;
    }
    dst[o++] = '"';
    dst[o] = '\0';
    return o;
}

const char *log_kv(char *dst, size_t dst_len, const char *s)
{
    (void)log_kv_escape(dst, dst_len, s, s ? strlen(s) : 0);
    return dst;
}
