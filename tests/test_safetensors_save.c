/*
** test_safetensors_save.c: what a checkpoint save promises beyond the bytes
** (issue 21): the writer refuses what the reader would refuse (the header
** limit, tested at the boundary), a save killed midway leaves nothing behind
** after the next one, stale temporary files of dead writers go and live
** ones stay, the file's mode is kept, a symlink is written through, and no
** reader blocks on a FIFO.
*/
#define _GNU_SOURCE /* flock */
#include "io_fixtures.h"

#include "alloc_hooks.h"
#include "nn.h"
#include "nn_io.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* nn_safetensors_open's documented limit on the header (nn_io.h). */
#define HEADER_LIMIT 100000000u

static char dir[512], path[700], err[512];

static void make_dir(void)
{
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "ckpt.safetensors");
}
static void drop_dir(void) { remove_dir(dir); }

static ag_tensor *vector(int64_t n, double first)
{
    ag_tensor *p = ag_param_new(AG_F32, 1, &n);
    cr_assert(p);
    for (int64_t i = 0; i < n; i++)
        ag_set(p, i, first + (double)i);
    return p;
}

static ag_status save_vector(const char *to, int64_t n, double first)
{
    ag_tensor *w = vector(n, first);
    ag_status s = nn_safetensors_save(to, 1, (const char *[]){"w"}, &w, NULL, NULL, err, sizeof err);
    ag_param_free(w);
    return s;
}

/* The first value of "w" in the file at 'from', which must hold n of them. */
static double load_first(const char *from, int64_t n)
{
    ag_tensor *w = vector(n, 0);
    ag_status s = nn_safetensors_load(from, 1, (const char *[]){"w"}, &w, NULL, NULL, err, sizeof err);
    cr_assert_eq(s, AG_OK, "%s", err);
    double v = ag_get(w, 0);
    ag_param_free(w);
    return v;
}

/* ------------------------------------------------------------- the limit */

/* Issue 21: the writer had no limit, the reader refused headers over 10^8
** bytes, and the atomic save replaced a good checkpoint by one that could
** not be opened. A header of exactly the limit saves and loads back; one
** byte more is refused and the old file stays. */
Test(safetensors_save, the_header_limit_is_the_readers, .init = make_dir, .fini = drop_dir, .timeout = 120)
{
    static const char frame[] = "{\"__metadata__\":{\"k\":\"\"},\"w\":{\"dtype\":\"F32\",\"shape\":[3],"
                                "\"data_offsets\":[0,12]}}";
    size_t fixed = strlen(frame), fill = HEADER_LIMIT - fixed;
    cr_assert_eq(HEADER_LIMIT % 8, 0, "a header of the limit needs no padding");
    char *value = malloc(fill + 2);
    cr_assert(value);
    memset(value, 'v', fill + 1);
    value[fill] = '\0';
    ag_tensor *w = vector(3, 1.0);
    const char *names[] = {"w"}, *keys[] = {"k"}, *values[] = {value};
    ag_status s = nn_safetensors_save_meta(path, 1, names, &w, 1, keys, values, NULL, NULL, err, sizeof err);
    cr_assert_eq(s, AG_OK, "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_size, 8 + HEADER_LIMIT + 12, "the header is exactly the limit");
    nn_safetensors *f = NULL;
    s = nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err);
    cr_assert_eq(s, AG_OK, "%s", err);
    const char *back = nn_safetensors_metadata_get(f, "k");
    cr_expect(back && strlen(back) == fill && back[0] == 'v' && back[fill - 1] == 'v');
    nn_safetensors_close(f);
    cr_expect_eq(load_first(path, 3), 1.0);

    /* One byte more: refused before any file is touched. */
    value[fill] = 'v';
    value[fill + 1] = '\0';
    ag_tensor *w2 = vector(3, 7.0);
    s = nn_safetensors_save_meta(path, 1, names, &w2, 1, keys, values, NULL, NULL, err, sizeof err);
    cr_expect_eq(s, AG_EINVAL);
    cr_expect(strncmp(err, "nn_safetensors_save_meta: ", 26) == 0 &&
                  strstr(err, "the header of 1 tensors and 1 metadata pairs would take 100000008 bytes, "
                              "above the limit of 100000000 that nn_safetensors_open reads"),
              "%s", err);
    cr_expect_eq(dir_entries(dir), 1);
    cr_expect_eq(load_first(path, 3), 1.0, "the old checkpoint was replaced");
    free(value);
    ag_param_free(w);
    ag_param_free(w2);
}

/* Many tensors reach the limit too: the writer counts every byte. */
Test(safetensors_save, many_tensors_are_counted_against_the_limit, .init = make_dir, .fini = drop_dir)
{
    /* 2 million names of 48 bytes take more than 10^8 bytes of header. */
    enum { N = 2000000 };
    const char **names = malloc(N * sizeof *names);
    char *text = malloc((size_t)N * 49);
    ag_tensor **ts = malloc(N * sizeof *ts);
    cr_assert(names && text && ts);
    ag_tensor *e = ag_param_new(AG_F32, 1, (int64_t[]){0});
    for (int i = 0; i < N; i++) {
        snprintf(text + (size_t)i * 49, 49, "%047d", i);
        names[i] = text + (size_t)i * 49;
        ts[i] = e;
    }
    alloc_hooks h = hooks_counting();
    ag_status s = nn_safetensors_save(path, N, names, ts, hook_alloc, &h, err, sizeof err);
    cr_expect_eq(s, AG_EINVAL);
    cr_expect(strstr(err, "the header of 2000000 tensors and 0 metadata pairs would take"), "%s", err);
    cr_expect_eq(dir_entries(dir), 0);
    cr_expect_eq(h.live, 0);
    ag_param_free(e);
    free(names);
    free(text);
    free(ts);
}

/* ------------------------------------------------------ temporary files */

static void die_now(int sig)
{
    (void)sig;
    raise(SIGKILL);
}

/* Issue 21: a save killed midway left '<path>.tmp.<pid>.0' forever. The
** child is killed by SIGKILL in the middle of writing: its file size limit
** raises SIGXFSZ at the first write past 64 KiB, whose handler kills it. */
Test(safetensors_save, a_save_killed_midway_leaves_nothing_after_the_next, .init = make_dir,
     .fini = drop_dir)
{
    cr_assert_eq(save_vector(path, 4, 1.0), AG_OK, "%s", err);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        signal(SIGXFSZ, die_now);
        struct rlimit small = {65536, 65536};
        setrlimit(RLIMIT_FSIZE, &small);
        save_vector(path, 1 << 18, 2.0);
        _exit(0);   /* not reached */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
    cr_expect_eq(load_first(path, 4), 1.0, "the old checkpoint survives");
    cr_assert_eq(save_vector(path, 4, 3.0), AG_OK, "%s", err);
    cr_expect_eq(dir_entries(dir), 1, "a temporary file of the killed save is left");
    cr_expect_eq(load_first(path, 4), 3.0);
}

static void touch(const char *name)
{
    char p[800];
    fixture_path(p, sizeof p, dir, name);
    cr_assert(write_text(p, "partial"));
}

static int exists(const char *name)
{
    char p[800];
    struct stat st;
    fixture_path(p, sizeof p, dir, name);
    return lstat(p, &st) == 0;
}

/* Where O_TMPFILE is missing the temporary file has a name from the start.
** The next save removes those of dead writers and nothing else. */
Test(safetensors_save, stale_temporaries_of_dead_writers_go_and_live_ones_stay, .init = make_dir,
     .fini = drop_dir)
{
    pid_t dead = fork();
    cr_assert_geq(dead, 0);
    if (dead == 0)
        _exit(0);
    cr_assert_eq(waitpid(dead, NULL, 0), dead);
    char stale[100], locked[100], other[100], odd[100], alive[100], mine[100];
    snprintf(stale, sizeof stale, "ckpt.safetensors.tmp.%d.0", (int)dead);
    snprintf(locked, sizeof locked, "ckpt.safetensors.tmp.%d.1", (int)dead);
    snprintf(other, sizeof other, "other.safetensors.tmp.%d.0", (int)dead);
    snprintf(odd, sizeof odd, "ckpt.safetensors.tmp.%d.x", (int)dead);
    snprintf(alive, sizeof alive, "ckpt.safetensors.tmp.1.0");   /* init never dies */
    snprintf(mine, sizeof mine, "ckpt.safetensors.tmp.%d.7", (int)getpid());
    const char *all[] = {stale, locked, other, odd, alive, mine};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        touch(all[i]);
    /* A writer whose pid means nothing here (another pid namespace) still
    ** holds its lock. */
    char p[800];
    fixture_path(p, sizeof p, dir, locked);
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(flock(fd, LOCK_EX), 0);

    cr_assert_eq(save_vector(path, 4, 1.0), AG_OK, "%s", err);
    cr_expect(!exists(stale), "the dead writer's file is left");
    cr_expect(exists(locked), "a locked file was removed");
    cr_expect(exists(other), "another target's file was removed");
    cr_expect(exists(odd), "a file of another form was removed");
    cr_expect(exists(alive), "a live writer's file was removed");
    cr_expect(exists(mine), "this process's file was removed");
    close(fd);
    cr_assert_eq(save_vector(path, 4, 2.0), AG_OK, "%s", err);
    cr_expect(!exists(locked), "unlocked and dead: it goes");
    cr_expect_eq(load_first(path, 4), 2.0);
}

/* A save to "" took "" as the target's base name, so every
** '.tmp.<pid>.<k>' of the working directory looked like one of its
** temporary files: those of dead pids were removed, then the rename failed
** with ENOENT. An empty path is refused before anything is touched. */
Test(safetensors_save, an_empty_path_is_refused_and_touches_nothing, .init = make_dir, .fini = drop_dir)
{
    pid_t dead = fork();
    cr_assert_geq(dead, 0);
    if (dead == 0)
        _exit(0);
    cr_assert_eq(waitpid(dead, NULL, 0), dead);
    char stale[100];
    snprintf(stale, sizeof stale, ".tmp.%d.0", (int)dead);
    touch(stale);
    cr_assert_eq(chdir(dir), 0);   /* each test runs in a process of its own */
    cr_expect_eq(save_vector("", 4, 1.0), AG_EINVAL);
    cr_expect_str_eq(err, "nn_safetensors_save: path is empty");
    cr_expect(exists(stale), "a file of the working directory was removed");
    cr_expect_eq(dir_entries(dir), 1);
    nn_model *m = nn_model_new(NULL, NULL);
    nn_param(m, "w", AG_F32, 1, (int64_t[]){4});
    cr_expect_eq(nn_model_save(m, "", err, sizeof err), AG_EINVAL);
    cr_expect(strncmp(err, "nn_model_save: ", 15) == 0 && strstr(err, "path is empty"), "%s", err);
    cr_expect(exists(stale));
    nn_model_free(m);
}

/* nn_safetensors_save_meta's messages, its own checks' and the writer's,
** all began "nn_safetensors_save:", a function the caller had not called. */
Test(safetensors_save, save_meta_names_itself, .init = make_dir, .fini = drop_dir)
{
    ag_tensor *w = vector(2, 0);
    const char *names[] = {"w"}, *keys[] = {"k", "k"}, *values[] = {"a", "b"};
    cr_expect_eq(nn_safetensors_save_meta(NULL, 1, names, &w, 0, NULL, NULL, NULL, NULL, err, sizeof err),
                 AG_EINVAL);
    cr_expect_str_eq(err, "nn_safetensors_save_meta: path is NULL");
    cr_expect_eq(nn_safetensors_save_meta(path, 1, names, &w, 2, keys, values, NULL, NULL, err, sizeof err),
                 AG_EINVAL);
    char want[800];
    snprintf(want, sizeof want, "nn_safetensors_save_meta: %s: meta_keys 'k' appears twice", path);
    cr_expect_str_eq(err, want);
    cr_expect_eq(nn_safetensors_save_meta(dir, 1, names, &w, 1, keys, values, NULL, NULL, err, sizeof err),
                 AG_EIO);
    cr_expect(strncmp(err, "nn_safetensors_save_meta: ", 26) == 0 && strstr(err, "is a directory"), "%s",
              err);
    cr_expect_eq(nn_safetensors_save(NULL, 1, names, &w, NULL, NULL, err, sizeof err), AG_EINVAL);
    cr_expect_str_eq(err, "nn_safetensors_save: path is NULL");
    cr_expect_eq(dir_entries(dir), 0);
    ag_param_free(w);
}

/* --------------------------------------------------- mode and symlinks */

static mode_t mode_of(const char *p)
{
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    return st.st_mode & 07777;
}

/* Issue 21: a 0600 checkpoint became 0644 after the next save. */
Test(safetensors_save, the_mode_is_kept_and_new_files_follow_the_umask, .init = make_dir,
     .fini = drop_dir)
{
    mode_t old_mask = umask(022);
    cr_assert_eq(save_vector(path, 4, 1.0), AG_OK, "%s", err);
    cr_expect_eq(mode_of(path), 0644);
    static const mode_t modes[] = {0600, 0640, 0400, 0755};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        cr_assert_eq(chmod(path, modes[i]), 0);
        cr_assert_eq(save_vector(path, 4, 2.0 + (double)i), AG_OK, "%s", err);
        cr_expect_eq(mode_of(path), modes[i], "mode %o became %o", modes[i], mode_of(path));
        cr_expect_eq(load_first(path, 4), 2.0 + (double)i);
    }
    char fresh[800];
    fixture_path(fresh, sizeof fresh, dir, "fresh.safetensors");
    umask(077);
    cr_assert_eq(save_vector(fresh, 4, 1.0), AG_OK, "%s", err);
    cr_expect_eq(mode_of(fresh), 0600);
    umask(old_mask);
}

/* Issue 21: a path that was a symlink was replaced by a regular file, and
** its target kept the old data. */
Test(safetensors_save, a_symlink_is_written_through, .init = make_dir, .fini = drop_dir)
{
    char sub[800], target[900], link[800], link2[800], linkbuf[100];
    fixture_path(sub, sizeof sub, dir, "real");
    cr_assert_eq(mkdir(sub, 0755), 0);
    snprintf(target, sizeof target, "%s/model.safetensors", sub);
    fixture_path(link, sizeof link, dir, "link.safetensors");
    fixture_path(link2, sizeof link2, dir, "link2.safetensors");
    cr_assert_eq(symlink("real/model.safetensors", link), 0);   /* relative, dangling for now */
    cr_assert_eq(symlink(link, link2), 0);                       /* absolute, to a link */

    cr_assert_eq(save_vector(link2, 4, 1.0), AG_OK, "%s", err);
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the link was replaced");
    cr_assert_eq(lstat(link2, &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the second link was replaced");
    cr_expect_eq(load_first(target, 4), 1.0, "the target did not get the data");

    cr_assert_eq(chmod(target, 0600), 0);
    cr_assert_eq(save_vector(link, 4, 5.0), AG_OK, "%s", err);
    ssize_t n = readlink(link, linkbuf, sizeof linkbuf - 1);
    cr_assert_gt(n, 0);
    linkbuf[n] = '\0';
    cr_expect_str_eq(linkbuf, "real/model.safetensors");
    cr_expect_eq(load_first(target, 4), 5.0);
    cr_expect_eq(load_first(link2, 4), 5.0);
    cr_expect_eq(mode_of(target), 0600);
    cr_expect_eq(dir_entries(dir), 3);
    cr_expect_eq(dir_entries(sub), 1);

    /* A loop is an error naming the path, not a hang. */
    char loop[800];
    fixture_path(loop, sizeof loop, dir, "loop");
    cr_assert_eq(symlink("loop", loop), 0);
    cr_expect_eq(save_vector(loop, 4, 1.0), AG_EIO);
    cr_expect(strstr(err, "more than 40 symbolic links to follow"), "%s", err);
    unlink(target);   /* drop_dir removes one level */
}

/* ------------------------------------------------------------- FIFOs */

/* Issue 21: every loader blocked forever on a FIFO. */
Test(safetensors_save, no_reader_or_writer_blocks_on_a_fifo, .init = make_dir, .fini = drop_dir,
     .timeout = 10)
{
    cr_assert_eq(mkfifo(path, 0600), 0);
    nn_safetensors *f = NULL;
    cr_expect_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_safetensors_open: ") && strstr(err, "is a FIFO, not a regular file"), "%s", err);
    ag_tensor *w = vector(4, 0);
    cr_expect_eq(nn_safetensors_load(path, 1, (const char *[]){"w"}, &w, NULL, NULL, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_safetensors_load: ") && strstr(err, "is a FIFO"), "%s", err);
    ag_param_free(w);
    nn_model *m = nn_model_new(NULL, NULL);
    nn_param(m, "w", AG_F32, 1, (int64_t[]){4});
    cr_expect_eq(nn_model_load(m, path, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "is a FIFO"), "%s", err);
    /* Saving over a FIFO is refused too, and leaves it. */
    cr_expect_eq(nn_model_save(m, path, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "a special file, not a regular file"), "%s", err);
    struct stat st;
    cr_expect(lstat(path, &st) == 0 && S_ISFIFO(st.st_mode));
    nn_model_free(m);
}
