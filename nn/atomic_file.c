/*
** atomic_file.c: replacing a file atomically. The new bytes go to a file in
** the target's directory, which is fsynced and renamed over the target, so
** a crash or an error at any point leaves the old file or the new one.
**
** Where the system allows (Linux, a file system with O_TMPFILE, /proc
** mounted) the new file has no name until it is complete: it is linked in
** as '<target>.tmp.<pid>.<k>' just before the rename, so a writer killed
** while writing leaves nothing. Elsewhere it is created under that name at
** once. Either way a writer killed between naming and renaming leaves the
** name behind, and the next save of the same target removes it.
**
** The rule for removing '<target>.tmp.<pid>.<k>', which guarantees that a
** live writer's file is never touched:
**   - no process with that pid exists (kill(pid, 0) fails with ESRCH), and
**     it is not this process (another thread may be saving);
**   - no one holds the file's lock: every writer takes an exclusive flock
**     on its file as soon as it opens it and keeps it until the file is
**     renamed or removed; the kernel drops it when the writer dies, even by
**     SIGKILL. This covers a writer whose pid means nothing here (another pid
**     namespace, another host on a shared file system with working locks);
**   - the name still points to the file that was checked and locked; it is
**     removed while the lock is held.
** A live writer's pid exists, or its lock is held, so its file stays.
*/
#define _GNU_SOURCE /* O_TMPFILE, flock */
#include "atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* As the kernel's limit on symlinks followed in one lookup. */
enum { MAX_LINKS = 40 };

static char *copy_string(ag_alloc_fn fn, void *ud, const char *s, size_t *size)
{
    *size = strlen(s) + 1;
    char *p = ag_realloc(fn, ud, NULL, 0, *size);
    if (p)
        memcpy(p, s, *size);
    return p;
}

/* Length of the directory part of 'path' (up to its last '/'), 0 if none. */
static size_t dir_length(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? (size_t)(slash - path) : 0;
}

/* Writes the directory of 'path' into 'out' ("." without a slash, "/" for
** a file at the root); 'out' has room for 'path'. */
static void dir_of(const char *path, char *out)
{
    size_t n = dir_length(path);
    if (!strchr(path, '/') || n == 0) {
        out[0] = strchr(path, '/') ? '/' : '.';
        n = 1;
    } else {
        memcpy(out, path, n);
    }
    out[n] = '\0';
}

/* Sets a->target to 'path' with every symlink followed (a relative link is
** read from its own directory). A path that does not exist is the target
** as it is: the save creates it. */
static ag_status follow_links(nni_atomic *a, char *err, size_t errlen)
{
    size_t size;
    char *cur = copy_string(a->fn, a->ud, a->path, &size);
    if (!cur)
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory", a->who, a->path);
    for (int hops = 0;; hops++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode))
            break;
        if (hops == MAX_LINKS) {
            ag_realloc(a->fn, a->ud, cur, size, 0);
            return nni_io_fail(err, errlen, AG_EIO, "%s: %s: more than %d symbolic links to follow", a->who,
                               a->path, MAX_LINKS);
        }
        size_t dir = dir_length(cur);
        size_t cap = (st.st_size > 0 ? (size_t)st.st_size : PATH_MAX) + 1;
        size_t nsize = dir + 1 + cap;
        char *next = ag_realloc(a->fn, a->ud, NULL, 0, nsize);
        if (!next) {
            ag_realloc(a->fn, a->ud, cur, size, 0);
            return nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory", a->who, a->path);
        }
        /* Read the link behind room for its directory, then move it. */
        ssize_t n = readlink(cur, next + dir + 1, cap);
        if (n < 0 || (size_t)n >= cap) {
            int e = n < 0 ? errno : ENAMETOOLONG;
            ag_realloc(a->fn, a->ud, next, nsize, 0);
            ag_realloc(a->fn, a->ud, cur, size, 0);
            return nni_io_fail(err, errlen, AG_EIO, "%s: %s: cannot read the symbolic link: %s", a->who,
                               a->path, strerror(e));
        }
        next[dir + 1 + (size_t)n] = '\0';
        if (next[dir + 1] == '/' || !strchr(cur, '/')) {
            memmove(next, next + dir + 1, (size_t)n + 1);
        } else {
            memcpy(next, cur, dir);
            next[dir] = '/';
        }
        ag_realloc(a->fn, a->ud, cur, size, 0);
        cur = next;
        size = nsize;
    }
    a->target = cur;
    a->block_size = size;
    return AG_OK;
}

/* Whether 'name' ends '.<digits>.<digits>' after 'base' + ".tmp": the form
** of a temporary file of this target; its pid in '*pid'. */
static bool temp_name_of(const char *name, const char *base, size_t base_len, long *pid)
{
    if (strncmp(name, base, base_len) != 0 || strncmp(name + base_len, ".tmp.", 5) != 0)
        return false;
    const char *p = name + base_len + 5;
    long v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 10; p++, digits++)
        v = v * 10 + (*p - '0');
    if (digits == 0 || *p != '.' || v <= 0 || v > INT_MAX)
        return false;
    for (digits = 0, p++; *p >= '0' && *p <= '9'; p++)
        digits++;
    *pid = v;
    return digits > 0 && *p == '\0';
}

/* Removes 'path' if it is a dead writer's temporary file (the rule above). */
static void remove_if_stale(const char *path, long pid)
{
    if ((pid_t)pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
        return;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat held, now;
    if (fstat(fd, &held) == 0 && S_ISREG(held.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        lstat(path, &now) == 0 && now.st_dev == held.st_dev && now.st_ino == held.st_ino)
        unlink(path);
    close(fd);
}

/* Best effort: a directory that cannot be listed leaves its files. 'scratch'
** holds 'dir' + '/' + any name. */
static void remove_stale_temps(const char *target, char *scratch, size_t scratch_size)
{
    size_t dir = dir_length(target);
    const char *base = dir || target[0] == '/' ? target + dir + 1 : target;
    dir_of(target, scratch);
    DIR *d = opendir(scratch);
    if (!d)
        return;
    size_t base_len = strlen(base), at = strlen(scratch);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long pid;
        if (!temp_name_of(e->d_name, base, base_len, &pid))
            continue;
        if (at + 1 + strlen(e->d_name) + 1 > scratch_size)
            continue;
        snprintf(scratch + at, scratch_size - at, "/%s", e->d_name);
        remove_if_stale(scratch, pid);
        scratch[at] = '\0';
    }
    closedir(d);
}

/* Creates '<target>.tmp.<pid>.<k>' exclusively, trying a few k; the fd, or
** -1 with errno set. */
static int create_named(nni_atomic *a, mode_t create_mode)
{
    int fd = -1;
    for (int k = 0; k < 100 && fd < 0; k++) {
        snprintf(a->tmp, a->tmp_size, "%s.tmp.%ld.%d", a->target, (long)getpid(), k);
        fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, create_mode);
        if (fd < 0 && errno != EEXIST)
            return -1;
    }
    return fd;
}

ag_status nni_atomic_begin(nni_atomic *a, const char *who, const char *path, ag_alloc_fn fn, void *ud,
                           char *err, size_t errlen)
{
    *a = (nni_atomic){.who = who, .path = path, .fn = fn, .ud = ud, .fd = -1};
    /* "" names no file, and its base name "" made every '.tmp.<pid>.<k>' of
    ** the working directory look like one of its temporary files: those of
    ** dead pids were removed before the rename failed. */
    if (!path[0])
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: path is empty", who);
    ag_status s = follow_links(a, err, errlen);
    if (s != AG_OK)
        return s;
    struct stat st;
    if (lstat(a->target, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            bool link = strcmp(a->target, path) != 0;
            s = nni_io_fail(err, errlen, AG_EIO, "%s: %s: %s%s%s is %s, not a regular file: it is not replaced",
                            who, path, link ? "its target " : "", link ? a->target : "", link ? "" : "it",
                            S_ISDIR(st.st_mode) ? "a directory" : "a special file");
            nni_atomic_abort(a);
            return s;
        }
        a->keep_mode = true;
        a->mode = st.st_mode & 07777;
    }
    /* One block holds the target's name, then room for a temporary name or
    ** a directory entry's path. */
    size_t tlen = strlen(a->target);
    size_t size = 2 * tlen + 2 + 300;
    char *block = ag_realloc(fn, ud, NULL, 0, size);
    if (!block) {
        nni_atomic_abort(a);
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory", who, path);
    }
    memcpy(block, a->target, tlen + 1);
    ag_realloc(fn, ud, a->target, a->block_size, 0);
    a->target = block;
    a->block_size = size;
    a->tmp = block + tlen + 1;
    a->tmp_size = size - (tlen + 1);
    remove_stale_temps(a->target, a->tmp, a->tmp_size);
    a->tmp[0] = '\0';

    /* Never broader than the file it replaces, even for a moment; the exact
    ** mode is set at commit. A new file gets 0666 less the umask. */
    mode_t create_mode = a->keep_mode ? (a->mode & 0666) : 0666;
#ifdef O_TMPFILE
    if (access("/proc/self/fd", X_OK) == 0) {
        dir_of(a->target, a->tmp);
        a->fd = open(a->tmp, O_TMPFILE | O_WRONLY | O_CLOEXEC, create_mode);
        a->unnamed = a->fd >= 0;
        a->tmp[0] = '\0';
    }
#endif
    if (a->fd < 0) {
        a->fd = create_named(a, create_mode);
        if (a->fd < 0) {
            int e = errno;
            nni_atomic_abort(a);
            return nni_io_fail(err, errlen, AG_EIO, "%s: %s: cannot create a temporary file beside it: %s",
                               who, path, strerror(e));
        }
        a->named = true;
    }
    /* A file system without locks still has the pid test. */
    while (flock(a->fd, LOCK_EX) != 0 && errno == EINTR)
        ;
    return AG_OK;
}

void nni_atomic_abort(nni_atomic *a)
{
    if (a->fd >= 0) {
        if (a->named)
            unlink(a->tmp);   /* before close: the lock covers the name to the end */
        close(a->fd);
    }
    a->fd = -1;
    a->named = false;
    if (a->target)
        ag_realloc(a->fn, a->ud, a->target, a->block_size, 0);
    a->target = a->tmp = NULL;
}

/* Gives the unnamed file its temporary name. */
static int link_unnamed(nni_atomic *a)
{
#ifdef O_TMPFILE
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", a->fd);
    for (int k = 0; k < 100; k++) {
        snprintf(a->tmp, a->tmp_size, "%s.tmp.%ld.%d", a->target, (long)getpid(), k);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, a->tmp, AT_SYMLINK_FOLLOW) == 0) {
            a->named = true;
            return 0;
        }
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
#endif
    return -1;
}

/* Makes the rename durable. Some file systems cannot fsync a directory
** (EINVAL); only a real I/O error counts. On failure errno says why. */
static bool sync_directory(nni_atomic *a)
{
    dir_of(a->target, a->tmp);
    int fd = open(a->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true;
    bool ok = fsync(fd) == 0 || errno != EIO;
    int why = errno;
    close(fd);
    errno = why;
    return ok;
}

ag_status nni_atomic_commit(nni_atomic *a, char *err, size_t errlen)
{
    const char *step = NULL;
    if (fsync(a->fd) != 0)
        step = "fsync of";
    else if (a->keep_mode && fchmod(a->fd, a->mode) != 0)
        step = "setting the mode of";
    else if (a->unnamed && link_unnamed(a) != 0)
        step = "linking";
    else if (rename(a->tmp, a->target) != 0)
        step = "renaming";
    if (step) {
        int e = errno;
        ag_status s = nni_io_fail(err, errlen, AG_EIO, "%s: %s: %s %s failed: %s; the previous file is unchanged",
                                  a->who, a->path, step, a->named ? a->tmp : "the new file", strerror(e));
        nni_atomic_abort(a);
        return s;
    }
    a->named = false;   /* the name is the target's now */
    close(a->fd);
    a->fd = -1;
    ag_status s = AG_OK;
    if (!sync_directory(a))
        s = nni_io_fail(err, errlen, AG_EIO, "%s: %s: fsync of its directory failed: %s; the new "
                        "file is in place, but a crash now may bring the previous one back",
                        a->who, a->path, strerror(errno));
    nni_atomic_abort(a);
    return s;
}
