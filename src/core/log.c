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

bool log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
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

size_t log_json_escape(char *dst, size_t dst_len, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (dst_len == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        char tmp[7];
        size_t n = 0;
        if (*p == '"' || *p == '\\') {
            tmp[n++] = '\\';
            tmp[n++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            tmp[n++] = '\\';
            tmp[n++] = 'u';
            tmp[n++] = '0';
            tmp[n++] = '0';
            tmp[n++] = hex[*p >> 4];
            tmp[n++] = hex[*p & 15];
        } else {
            tmp[n++] = (char)*p;
        }
        if (o + n >= dst_len)
            break;
        memcpy(dst + o, tmp, n);
        o += n;
    }
    dst[o] = '\0';
    return o;
}
