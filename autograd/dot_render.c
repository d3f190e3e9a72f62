/*
** dot_render.c: DOT text to SVG, PNG or PDF by running Graphviz's `dot`
** program, found on PATH (or named by the AG_DOT environment variable) when
** a picture is asked for. The library links nothing of Graphviz: a program
** that embeds it pulls in no package, and pictures work wherever Graphviz is
** installed. Built with -Dgraphviz=disabled, the library never starts a
** process and rendering reports AG_EUNSUPPORTED; DOT text always works.
*/
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <string.h>

#ifdef AG_HAVE_GRAPHVIZ
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
#endif

static void set_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool known_format(const char *format)
{
    return !strcmp(format, "svg") || !strcmp(format, "png") || !strcmp(format, "pdf");
}

#ifdef AG_HAVE_GRAPHVIZ

#define HOW_TO_GET_DOT "install Graphviz (Debian: apt-get install graphviz) or set AG_DOT"

/* The program to run: $AG_DOT when set and not empty, else "dot" on PATH. */
static const char *dot_program(void)
{
    const char *p = getenv("AG_DOT");
    return p && *p ? p : "dot";
}

static bool is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Whether 'prog' names an executable: as a path when it holds a '/', else
** searched on PATH as posix_spawnp will. */
static bool program_found(const char *prog)
{
    if (strchr(prog, '/'))
        return is_executable_file(prog);
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/bin:/bin";
    size_t plen = strlen(prog);
    for (const char *dir = path;;) {
        const char *end = strchr(dir, ':');
        size_t dlen = end ? (size_t)(end - dir) : strlen(dir);
        char buf[4096];
        if (dlen + plen + 2 <= sizeof buf) {
            /* An empty entry means the current directory. */
            int n = dlen ? snprintf(buf, sizeof buf, "%.*s/%s", (int)dlen, dir, prog)
                         : snprintf(buf, sizeof buf, "./%s", prog);
            if (n > 0 && is_executable_file(buf))
                return true;
        }
        if (!end)
            return false;
        dir = end + 1;
    }
}

int ag_dot_can_render(void) { return program_found(dot_program()); }

/* Feeds 'text' to the child through 'in' while collecting what it writes to
** 'errfd' in err_out (truncated to its size), until the child closes both.
** Polling both avoids a deadlock when the child reports more than a pipe
** holds before it has read its input. 'in' is a socket so that send() can
** refuse to raise SIGPIPE when the child exits early: the host process must
** never be killed by our child's death. */
static void exchange(int in, int errfd, const char *text, char *err_out, size_t err_size)
{
    size_t len = strlen(text), sent = 0, got = 0;
    bool in_open = true, err_open = true;
    if (len == 0) {
        close(in);
        in_open = false;
    }
    while (in_open || err_open) {
        struct pollfd p[2] = {{.fd = in_open ? in : -1, .events = POLLOUT},
                              {.fd = err_open ? errfd : -1, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (in_open && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = send(in, text + sent, len - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            if ((n < 0 && errno != EINTR && errno != EAGAIN) || sent == len) {
                close(in);
                in_open = false;
            }
        }
        if (err_open && (p[1].revents & (POLLIN | POLLERR | POLLHUP))) {
            char buf[512];
            ssize_t n = read(errfd, buf, sizeof buf);
            if (n > 0) {
                size_t keep = got + 1 < err_size ? err_size - 1 - got : 0;
                if (keep > (size_t)n)
                    keep = (size_t)n;
                memcpy(err_out + got, buf, keep);
                got += keep;
            } else if (n == 0 || errno != EINTR) {
                err_open = false;
            }
        }
    }
    if (in_open)
        close(in);
    err_out[got] = '\0';
    while (got > 0 && (err_out[got - 1] == '\n' || err_out[got - 1] == ' '))
        err_out[--got] = '\0';
}

/* Runs `dot -T<format> -o <out>` on 'text'. Returns the child's exit status
** (or -1 when it could not be started, with errno's text in msg), and what it
** printed on stderr in msg. */
static int run_dot(const char *prog, const char *text, const char *format, const char *out,
                   char *msg, size_t msg_size)
{
    int sv[2], ep[2];
    msg[0] = '\0';
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        snprintf(msg, msg_size, "%s", strerror(errno));
        return -1;
    }
    if (pipe(ep) != 0) {
        snprintf(msg, msg_size, "%s", strerror(errno));
        close(sv[0]), close(sv[1]);
        return -1;
    }
    /* Our ends must not leak into the child (it would never see EOF). */
    fcntl(sv[0], F_SETFD, FD_CLOEXEC);
    fcntl(ep[0], F_SETFD, FD_CLOEXEC);
    char tflag[8];
    snprintf(tflag, sizeof tflag, "-T%s", format);
    char *argv[] = {(char *)prog, tflag, "-o", (char *)out, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, ep[1], STDERR_FILENO);
    /* The child's stdout is ours unless redirected: dot writes to -o only,
    ** but keep the host's stdout out of reach anyway. */
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    close(ep[1]);
    if (rc != 0) {
        snprintf(msg, msg_size, "%s", strerror(rc));
        close(sv[0]), close(ep[0]);
        return -1;
    }
    exchange(sv[0], ep[0], text, msg, msg_size);
    close(ep[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(msg, msg_size, "waitpid: %s", strerror(errno));
            return -1;
        }
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (!msg[0])
        snprintf(msg, msg_size, "killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 128;
}

/* Renders into a temporary file beside 'path', renamed over it only when
** dot succeeded: a failed render never leaves a half-written picture. */
static ag_status render(const char *dot, const char *format, const char *path, char *err,
                        size_t errlen)
{
    const char *prog = dot_program();
    if (!program_found(prog)) {
        set_err(err, errlen,
                "ag_dot_render: cannot make '%s': Graphviz's '%s' program was not found (%s); "
                "a .dot file can be written without it",
                path, prog, HOW_TO_GET_DOT);
        return AG_EUNSUPPORTED;
    }
    /* The temporary file is made as the picture would be (mode 0666 less
    ** the umask), so renaming it over 'path' gives what writing would. */
    char tmp[4096];
    int fd = -1;
    for (unsigned n = 0; fd < 0 && n < 100; n++) {
        if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), n) >=
            (int)sizeof tmp) {
            set_err(err, errlen, "ag_dot_render: path '%.64s...' is too long", path);
            return AG_EINVAL;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        set_err(err, errlen, "ag_dot_render: cannot open '%s' for writing: %s", path,
                strerror(errno));
        return AG_EIO;
    }
    close(fd);
    char msg[512];
    int code = run_dot(prog, dot, format, tmp, msg, sizeof msg);
    ag_status s = AG_OK;
    struct stat st;
    if (code == -1) {
        set_err(err, errlen, "ag_dot_render: cannot run '%s': %s", prog, msg);
        s = AG_EUNSUPPORTED;
    } else if (code != 0) {
        set_err(err, errlen, "ag_dot_render: '%s -T%s' failed (exit %d): %s", prog, format, code,
                msg[0] ? msg : "no message");
        s = AG_EINVAL;
    } else if (stat(tmp, &st) != 0 || st.st_size == 0) {
        set_err(err, errlen, "ag_dot_render: '%s -T%s' exited 0 but wrote nothing", prog, format);
        s = AG_EINVAL;
    } else if (rename(tmp, path) != 0) {
        set_err(err, errlen, "ag_dot_render: cannot write '%s': %s", path, strerror(errno));
        s = AG_EIO;
    }
    if (s != AG_OK)
        unlink(tmp);
    return s;
}

#else

int ag_dot_can_render(void) { return 0; }

static ag_status render(const char *dot, const char *format, const char *path, char *err,
                        size_t errlen)
{
    (void)dot;
    set_err(err, errlen,
            "ag_dot_render: cannot make '%s': autograd was built without Graphviz rendering "
            "(-Dgraphviz=disabled); write DOT text (.dot) instead and run 'dot -T%s'",
            path, format);
    return AG_EUNSUPPORTED;
}

#endif

ag_status ag_dot_render(const char *dot, const char *format, const char *path, char *err,
                        size_t errlen)
{
    set_err(err, errlen, "%s", "");
    if (!dot || !format || !path) {
        set_err(err, errlen, "ag_dot_render: %s is NULL",
                !dot ? "the DOT text" : !format ? "the format" : "the path");
        return AG_EINVAL;
    }
    if (!known_format(format)) {
        set_err(err, errlen, "ag_dot_render: format '%s' is not svg, png or pdf", format);
        return AG_EINVAL;
    }
    return render(dot, format, path, err, errlen);
}
