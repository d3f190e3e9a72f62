/*
** test_metrics_log.c: the progress report and the metrics log of nn_io.h,
** for training loops of users' own.
*/
#include "io_fixtures.h"   /* first: it sets _POSIX_C_SOURCE */

#include "nn.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

static char *read_all(const char *path)
{
    static char text[1 << 14];
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

Test(metrics_log, csv_has_one_header_and_exact_numbers_and_appends)
{
    char dir[256], path[300], err[256];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "log.csv");
    nn_metrics_log *log = NULL;
    cr_assert_eq(nn_metrics_log_open(path, NN_LOG_CSV, 0, NULL, NULL, &log, err, sizeof err), AG_OK,
                 "%s", err);
    const char *keys[] = {"epoch", "loss"};
    cr_assert_eq(nn_metrics_log_write(log, 2, keys, (double[]){1, 0.1}, err, sizeof err), AG_OK);
    cr_assert_eq(nn_metrics_log_write(log, 2, keys, (double[]){2, 1.0 / 3}, err, sizeof err), AG_OK);
    /* A record of other columns is refused, naming them. */
    const char *other[] = {"epoch", "acc"};
    cr_expect_eq(nn_metrics_log_write(log, 2, other, (double[]){3, 0.5}, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "column 2 is 'acc', where the log has 'loss'"), "%s", err);
    cr_expect_eq(nn_metrics_log_write(log, 1, keys, (double[]){3}, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "1 columns, where the log has 2"), "%s", err);
    const char *bad[] = {"epoch", "a,b"};
    cr_expect_eq(nn_metrics_log_write(log, 2, bad, (double[]){3, 0.5}, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "'a,b'"), "%s", err);
    cr_assert_eq(nn_metrics_log_close(log, err, sizeof err), AG_OK);
    cr_expect_str_eq(read_all(path), "epoch,loss\n1,0.10000000000000001\n2,0.33333333333333331\n");

    /* A resumed run appends under the same header. */
    cr_assert_eq(nn_metrics_log_open(path, NN_LOG_CSV, 1, NULL, NULL, &log, err, sizeof err), AG_OK,
                 "%s", err);
    cr_expect_eq(nn_metrics_log_write(log, 2, other, (double[]){3, 0.5}, err, sizeof err), AG_EINVAL,
                 "the file's header fixes the columns");
    cr_assert_eq(nn_metrics_log_write(log, 2, keys, (double[]){3, 0.25}, err, sizeof err), AG_OK);
    cr_assert_eq(nn_metrics_log_close(log, err, sizeof err), AG_OK);
    cr_expect_str_eq(read_all(path),
                     "epoch,loss\n1,0.10000000000000001\n2,0.33333333333333331\n3,0.25\n");
    remove_dir(dir);
}

Test(metrics_log, json_lines_write_null_for_what_json_cannot_hold)
{
    char dir[256], path[300], err[256];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "log.jsonl");
    nn_metrics_log *log = NULL;
    cr_assert_eq(nn_metrics_log_open(path, NN_LOG_JSONL, 0, NULL, NULL, &log, err, sizeof err),
                 AG_OK, "%s", err);
    const char *keys[] = {"epoch", "loss", "grad_norm"};
    cr_assert_eq(nn_metrics_log_write(log, 3, keys, (double[]){1, 0.5, NAN}, err, sizeof err), AG_OK);
    cr_assert_eq(nn_metrics_log_write(log, 3, keys, (double[]){2, INFINITY, 3}, err, sizeof err),
                 AG_OK);
    cr_assert_eq(nn_metrics_log_close(log, err, sizeof err), AG_OK);
    cr_expect_str_eq(read_all(path), "{\"epoch\": 1, \"loss\": 0.5, \"grad_norm\": null}\n"
                                     "{\"epoch\": 2, \"loss\": null, \"grad_norm\": 3}\n");
    remove_dir(dir);
}

Test(metrics_log, bad_arguments_are_named)
{
    char err[256];
    nn_metrics_log *log = (nn_metrics_log *)&err;
    cr_expect_eq(nn_metrics_log_open(NULL, NN_LOG_CSV, 0, NULL, NULL, &log, err, sizeof err),
                 AG_EINVAL);
    cr_expect_null(log);
    cr_expect(strstr(err, "nn_metrics_log_open: path is NULL"), "%s", err);
    cr_expect_eq(nn_metrics_log_open("/tmp/x", (nn_log_format)7, 0, NULL, NULL, &log, err,
                                     sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "format 7"), "%s", err);
    cr_expect_eq(nn_metrics_log_open("/nonexistent/dir/log.csv", NN_LOG_CSV, 0, NULL, NULL, &log,
                                     err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "/nonexistent/dir/log.csv"), "%s", err);
    cr_expect_eq(nn_metrics_log_write(NULL, 1, (const char *[]){"a"}, (double[]){1}, err, sizeof err),
                 AG_EINVAL);
    cr_expect(strstr(err, "nn_metrics_log_write: the log is NULL"), "%s", err);
    cr_expect_eq(nn_metrics_log_close(NULL, err, sizeof err), AG_OK);
}

/* One nn_metrics_log_write while files may grow to 'limit' bytes only: the
** write(2) that crosses the limit stores the bytes below it and then fails
** (EFBIG, SIGXFSZ ignored), as a disk that fills in the middle of a record
** does. The limit is lifted again before returning, as space freed later. */
static ag_status write_under_size_limit(rlim_t limit, nn_metrics_log *log, int n,
                                        const char *const *keys, const double *values, char *err,
                                        size_t errlen)
{
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 4096)
        cr_skip_test("RLIMIT_FSIZE's hard limit %lu is too low", (unsigned long)old.rlim_max);
    struct sigaction ignore = {.sa_handler = SIG_IGN}, saved;
    sigemptyset(&ignore.sa_mask);
    cr_assert_eq(sigaction(SIGXFSZ, &ignore, &saved), 0);
    struct rlimit small = {.rlim_cur = limit, .rlim_max = old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    ag_status st = nn_metrics_log_write(log, n, keys, values, err, errlen);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    cr_assert_eq(sigaction(SIGXFSZ, &saved, NULL), 0);
    return st;
}

/* A disk that fills in the middle of a record: the record's first bytes
** must not stay in the file, and no later record may follow them. */
Test(metrics_log, a_record_cut_short_by_a_full_disk_leaves_only_whole_lines)
{
    char dir[256], path[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "log.csv");
    nn_metrics_log *log = NULL;
    cr_assert_eq(nn_metrics_log_open(path, NN_LOG_CSV, 0, NULL, NULL, &log, err, sizeof err), AG_OK,
                 "%s", err);
    const char *keys[] = {"epoch", "loss"};
    const char *first = "epoch,loss\n1,0.10000000000000001\n";
    cr_assert_eq(nn_metrics_log_write(log, 2, keys, (double[]){1, 0.1}, err, sizeof err), AG_OK);
    /* Room for 5 bytes of "2,0.33333333333333331\n". */
    cr_expect_eq(write_under_size_limit(strlen(first) + 5, log, 2, keys, (double[]){2, 1.0 / 3},
                                        err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_metrics_log_write") && strstr(err, path) &&
              strstr(err, strerror(EFBIG)), "%s", err);
    cr_expect_str_eq(read_all(path), first, "the cut record is taken out again");
    /* Space is back, but the log stays failed: a record after the gap
    ** would read as if none were missing. */
    cr_expect_eq(nn_metrics_log_write(log, 2, keys, (double[]){3, 0.25}, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_metrics_log_write") && strstr(err, path) &&
              strstr(err, "failed earlier") && strstr(err, strerror(EFBIG)), "%s", err);
    cr_expect_str_eq(read_all(path), first);
    cr_expect_eq(nn_metrics_log_close(log, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_metrics_log_close") && strstr(err, path) &&
              strstr(err, strerror(EFBIG)), "%s", err);
    cr_expect_str_eq(read_all(path), first);
    remove_dir(dir);
}

/* The same failure in the first record, whose CSV header goes with it. */
Test(metrics_log, a_header_cut_short_is_taken_out_and_not_written_twice)
{
    char dir[256], path[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "log.csv");
    nn_metrics_log *log = NULL;
    cr_assert_eq(nn_metrics_log_open(path, NN_LOG_CSV, 0, NULL, NULL, &log, err, sizeof err), AG_OK,
                 "%s", err);
    const char *keys[] = {"epoch", "loss"};
    cr_expect_eq(write_under_size_limit(5, log, 2, keys, (double[]){1, 0.1}, err, sizeof err),
                 AG_EIO);
    cr_expect_str_eq(read_all(path), "", "no part of the header stays");
    cr_expect_eq(nn_metrics_log_write(log, 2, keys, (double[]){2, 0.5}, err, sizeof err), AG_EIO);
    cr_expect_str_eq(read_all(path), "");
    cr_expect_eq(nn_metrics_log_close(log, err, sizeof err), AG_EIO);
    remove_dir(dir);
}

/* JSON lines, appended to an existing log (a resumed run): the cut record
** goes, the lines of the earlier run stay. */
Test(metrics_log, json_lines_appended_keep_the_earlier_run_whole_after_a_full_disk)
{
    char dir[256], path[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "log.jsonl");
    const char *earlier = "{\"epoch\": 1, \"loss\": 0.5}\n";
    cr_assert(write_text(path, earlier));
    nn_metrics_log *log = NULL;
    cr_assert_eq(nn_metrics_log_open(path, NN_LOG_JSONL, 1, NULL, NULL, &log, err, sizeof err),
                 AG_OK, "%s", err);
    const char *keys[] = {"epoch", "loss"};
    cr_expect_eq(write_under_size_limit(strlen(earlier) + 12, log, 2, keys, (double[]){2, 0.25},
                                        err, sizeof err), AG_EIO);
    cr_expect_str_eq(read_all(path), earlier);
    cr_expect_eq(nn_metrics_log_write(log, 2, keys, (double[]){3, 0.125}, err, sizeof err), AG_EIO);
    cr_expect_eq(nn_metrics_log_close(log, err, sizeof err), AG_EIO);
    cr_expect_str_eq(read_all(path), earlier);
    remove_dir(dir);
}

/* /dev/full fails every write with ENOSPC: the error names the function,
** the path and the reason, at the write that failed (not later, at close). */
Test(metrics_log, a_write_to_a_full_device_fails_at_once_and_stays_failed)
{
    char err[512];
    nn_metrics_log *log = NULL;
    ag_status st = nn_metrics_log_open("/dev/full", NN_LOG_JSONL, 0, NULL, NULL, &log, err,
                                       sizeof err);
    if (st != AG_OK)
        cr_skip_test("no /dev/full here: %s", err);
    const char *keys[] = {"epoch"};
    cr_expect_eq(nn_metrics_log_write(log, 1, keys, (double[]){1}, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_metrics_log_write") && strstr(err, "/dev/full") &&
              strstr(err, strerror(ENOSPC)), "%s", err);
    cr_expect_eq(nn_metrics_log_write(log, 1, keys, (double[]){2}, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "failed earlier"), "%s", err);
    cr_expect_eq(nn_metrics_log_close(log, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_metrics_log_close") && strstr(err, "/dev/full") &&
              strstr(err, strerror(ENOSPC)), "%s", err);
}

/* A log whose last line is not whole (a run that died in the middle of a
** line on another system, or a file cut short) is not continued: a record
** appended to it would glue onto the broken line. */
Test(metrics_log, appending_to_a_log_whose_last_line_is_cut_is_refused)
{
    char dir[256], path[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "log.csv");
    const char *cut = "epoch,loss\n1,0.5\n2,0.2";
    cr_assert(write_text(path, cut));
    nn_metrics_log *log = (nn_metrics_log *)&err;
    cr_expect_eq(nn_metrics_log_open(path, NN_LOG_CSV, 1, NULL, NULL, &log, err, sizeof err), AG_EIO);
    cr_expect_null(log);
    cr_expect(strstr(err, "nn_metrics_log_open") && strstr(err, path) &&
              strstr(err, "does not end in a newline"), "%s", err);
    cr_expect_str_eq(read_all(path), cut, "the file is left as it was");
    fixture_path(path, sizeof path, dir, "log.jsonl");
    cr_assert(write_text(path, "{\"epoch\": 1}"));
    cr_expect_eq(nn_metrics_log_open(path, NN_LOG_JSONL, 1, NULL, NULL, &log, err, sizeof err),
                 AG_EIO);
    cr_expect(strstr(err, "does not end in a newline"), "%s", err);
    remove_dir(dir);
}

/* Into a file (not a terminal) the report is a line every quarter. */
Test(progress, plain_lines_every_quarter_into_a_file)
{
    FILE *f = tmpfile();
    cr_assert(f);
    nn_progress p;
    nn_progress_start(&p, f, "epoch 1/2", 8);
    for (int64_t s = 1; s <= 8; s++)
        nn_progress_update(&p, s, 1.0 / (double)s);
    double seconds = nn_progress_finish(&p);
    cr_expect_geq(seconds, 0.0);
    rewind(f);
    char text[2048];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    int lines = 0;
    for (char *c = text; *c; c++)
        lines += *c == '\n';
    cr_expect_eq(lines, 4, "%s", text);
    cr_expect(strstr(text, "epoch 1/2  step 2/8"), "%s", text);
    cr_expect(strstr(text, "step 8/8") && strstr(text, "loss 0.1250"), "%s", text);
    nn_progress_update(NULL, 1, 0);   /* NULL is a no-op, not a crash */
    cr_expect_eq(nn_progress_finish(NULL), 0.0);
}
