/*
** test_metrics_log.c: the progress report and the metrics log of nn_io.h,
** for training loops of users' own.
*/
#include "io_fixtures.h"   /* first: it sets _POSIX_C_SOURCE */

#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

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
