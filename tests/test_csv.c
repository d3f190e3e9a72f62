/*
** test_csv.c: the numeric CSV reader: headers, label and target columns,
** quoting, line endings, and errors that name the file, line and column.
*/
#include "io_fixtures.h"

#include "alloc_hooks.h"
#include "nn_io.h"

#include <criterion/criterion.h>
#include <float.h>

static char dir[512], path[600], err[512];

static void make_dir(void)
{
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "data.csv");
}

static void drop_dir(void) { remove_dir(dir); }

static nn_dataset *load(const char *text, const nn_csv_options *opt, ag_dtype dt, ag_status want)
{
    cr_assert(write_text(path, text));
    nn_dataset *ds = NULL;
    ag_status s = nn_csv_load(path, opt, dt, NULL, NULL, &ds, err, sizeof err);
    cr_assert_eq(s, want, "status %d: %s", (int)s, err);
    if (want != AG_OK)
        cr_assert_null(ds);
    return ds;
}

static void expect_error(const char *text, const nn_csv_options *opt, ag_status want, const char *where,
                         const char *what)
{
    load(text, opt, AG_F64, want);
    char prefix[800];
    snprintf(prefix, sizeof prefix, "nn_csv_load: %s: %s", path, where);
    cr_expect(strstr(err, prefix), "'%s' lacks '%s'", err, prefix);
    cr_expect(strstr(err, what), "'%s' lacks '%s'", err, what);
}

Test(csv, header_and_label_column, .init = make_dir, .fini = drop_dir)
{
    nn_csv_options opt = {.header = 1, .ykind = NN_Y_LABELS, .y_column = -1};
    nn_dataset *ds =
        load("sepal,petal,\"class, id\"\n5.1,1.4,0\n4.9,-1.5e-1,2\n6.2,3,1\n", &opt, AG_F32, AG_OK);
    cr_assert_eq(nn_dataset_len(ds), 3);
    cr_assert_eq(nn_dataset_x_rank(ds), 1);
    cr_assert_eq(nn_dataset_x_shape(ds)[0], 2);
    const float *x = nn_dataset_x(ds);
    const float want[6] = {5.1f, 1.4f, 4.9f, -0.15f, 6.2f, 3.0f};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(x[i], want[i], "x[%d] = %g", i, (double)x[i]);
    const int64_t *y = nn_dataset_labels(ds);
    cr_expect(y[0] == 0 && y[1] == 2 && y[2] == 1);
    cr_expect_eq(nn_dataset_num_classes(ds), 3);
    cr_expect_null(nn_dataset_y(ds));
    nn_dataset_free(ds);
}

Test(csv, no_header_no_label_reads_every_column, .init = make_dir, .fini = drop_dir)
{
    nn_dataset *ds = load("1,2,3\n4,5,6", NULL, AG_F64, AG_OK);
    cr_assert_eq(nn_dataset_len(ds), 2);
    cr_assert_eq(nn_dataset_x_shape(ds)[0], 3);
    cr_expect_eq(nn_dataset_ykind(ds), NN_Y_NONE);
    cr_expect_null(nn_dataset_labels(ds));
    const double *x = nn_dataset_x(ds);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(x[i], i + 1.0);
    nn_dataset_free(ds);
}

Test(csv, regression_target_from_any_column, .init = make_dir, .fini = drop_dir)
{
    nn_csv_options opt = {.ykind = NN_Y_VALUES, .y_column = 1};
    nn_dataset *ds = load("0.5,10.25,7\n-2,3.5,8\n", &opt, AG_F64, AG_OK);
    cr_assert_eq(nn_dataset_ykind(ds), NN_Y_VALUES);
    cr_assert_eq(nn_dataset_y_rank(ds), 1);
    cr_assert_eq(nn_dataset_y_shape(ds)[0], 1);
    const double *x = nn_dataset_x(ds), *y = nn_dataset_y(ds);
    cr_expect(x[0] == 0.5 && x[1] == 7 && x[2] == -2 && x[3] == 8);
    cr_expect(y[0] == 10.25 && y[1] == 3.5);
    nn_dataset_free(ds);
}

Test(csv, crlf_blank_lines_bom_blanks_and_quotes, .init = make_dir, .fini = drop_dir)
{
    nn_csv_options opt = {.header = 1, .ykind = NN_Y_LABELS, .y_column = 0};
    nn_dataset *ds = load("\xef\xbb\xbf\r\n\"y\",\"multi\nline\"\r\n\r\n  1 , \"2.5\" \r\n\n\t0,\t-3\r\n\n",
                          &opt, AG_F64, AG_OK);
    cr_assert_eq(nn_dataset_len(ds), 2);
    const double *x = nn_dataset_x(ds);
    cr_expect(x[0] == 2.5 && x[1] == -3);
    cr_expect(nn_dataset_labels(ds)[0] == 1 && nn_dataset_labels(ds)[1] == 0);
    nn_dataset_free(ds);
}

Test(csv, bad_numbers_name_line_and_column, .init = make_dir, .fini = drop_dir)
{
    expect_error("1,2,3\n4,abc,6\n", NULL, AG_EIO, "line 2, column 2: ", "'abc' is not a number");
    expect_error("1,2,3\n4,5,6x\n", NULL, AG_EIO, "line 2, column 3: ", "'6x' is not a number");
    expect_error("a,b\n\n1,\n", &(nn_csv_options){.header = 1}, AG_EIO, "line 3, column 2: ", "empty field");
    expect_error("1,nan\n", NULL, AG_EIO, "line 1, column 2: ", "'nan' is not a number");
    expect_error("1,inf\n", NULL, AG_EIO, "line 1, column 2: ", "'inf' is not a number");
    expect_error("1,1e999\n", NULL, AG_EIO, "line 1, column 2: ", "'1e999' is out of range");
    /* Line numbers count the lines inside quoted fields and blank lines. */
    expect_error("\"a\nb\",c\n\n1,2\n3,?\n", &(nn_csv_options){.header = 1}, AG_EIO,
                 "line 5, column 2: ", "'?' is not a number");
}

/* Issue 21: strtod alone took hex and refused long numbers and overflows
** alike as "not a number". */
Test(csv, numbers_are_decimal_of_any_length, .init = make_dir, .fini = drop_dir)
{
    expect_error("1,0x10\n", NULL, AG_EIO, "line 1, column 2: ", "'0x10' is not a number");
    expect_error("0X1p3\n", NULL, AG_EIO, "line 1, column 1: ", "'0X1p3' is not a number");
    expect_error("infinity\n", NULL, AG_EIO, "line 1, column 1: ", "'infinity' is not a number");
    expect_error("1e\n", NULL, AG_EIO, "line 1, column 1: ", "'1e' is not a number");
    expect_error(".\n", NULL, AG_EIO, "line 1, column 1: ", "'.' is not a number");
    expect_error("1,-1e400\n", NULL, AG_EIO, "line 1, column 2: ", "'-1e400' is out of range");
    /* 100 characters: 1.000...0001 rounds to 1; then a long integer. */
    char text[400];
    snprintf(text, sizeof text, "1.%097d1,%s\n", 0, "123456789012345678901234567890123456789012345678901234567890"
                                                  "1234567890123456789012345678901234567890");
    nn_dataset *ds = load(text, NULL, AG_F64, AG_OK);
    const double *x = nn_dataset_x(ds);
    cr_expect_eq(x[0], 1.0);
    cr_expect_eq(x[1], 1.2345678901234568e99);
    nn_dataset_free(ds);
    /* Signs, a bare fraction, an exponent, an underflow to the nearest
    ** double (zero), quoted numbers. */
    ds = load("+1.5,-.25,2E+3,1e-400,\"7\"\n", NULL, AG_F64, AG_OK);
    x = nn_dataset_x(ds);
    cr_expect(x[0] == 1.5 && x[1] == -0.25 && x[2] == 2000 && x[3] == 0 && x[4] == 7);
    nn_dataset_free(ds);
}

/* FLT_MAX printed with 9 digits is a hair above it, and reads back as it. */
Test(csv, f32_range_ends_half_an_ulp_past_flt_max, .init = make_dir, .fini = drop_dir)
{
    nn_dataset *ds = load("3.40282347e+38,-3.40282347e+38\n", NULL, AG_F32, AG_OK);
    const float *x = nn_dataset_x(ds);
    cr_expect(x[0] == FLT_MAX && x[1] == -FLT_MAX);
    nn_dataset_free(ds);
    load("3.4028236e38\n", NULL, AG_F32, AG_EIO);
    cr_expect(strstr(err, "'3.4028236e38' is out of range for f32"), "%s", err);
}

/* An f32 value was strtod's double rounded again to float. 1 + 2^-24 is
** the midpoint between 1 and the next float; a decimal a hair above it
** (closer than half a double's ulp) became that midpoint as a double, and
** then 1 by ties-to-even, where rounding once gives 1 + 2^-23. */
Test(csv, f32_values_are_rounded_once, .init = make_dir, .fini = drop_dir)
{
    const float up = 1.0f + 0x1p-23f;
    nn_dataset *ds = load("1.00000005960464477539062500001,-1.00000005960464477539062500001,"
                          "1.00000005960464477539062499999,1.000000059604644775390625\n",
                          NULL, AG_F32, AG_OK);
    const float *x = nn_dataset_x(ds);
    cr_expect_eq(x[0], up, "%.9g", x[0]);
    cr_expect_eq(x[1], -up, "%.9g", x[1]);
    cr_expect_eq(x[2], 1.0f, "%.9g", x[2]);
    cr_expect_eq(x[3], 1.0f, "the midpoint itself goes to the even float: %.9g", x[3]);
    nn_dataset_free(ds);
    /* A regression target likewise. */
    ds = load("0,1.00000005960464477539062500001\n", &(nn_csv_options){.ykind = NN_Y_VALUES, .y_column = -1},
              AG_F32, AG_OK);
    cr_expect_eq(((const float *)nn_dataset_y(ds))[0], up);
    nn_dataset_free(ds);
}

Test(csv, messages_show_nul_bytes_escaped, .init = make_dir, .fini = drop_dir)
{
    cr_assert(write_bytes(path, "1,2\0x9\n", 7));
    nn_dataset *ds = NULL;
    cr_expect_eq(nn_csv_load(path, NULL, AG_F64, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "'2\\0x9' is not a number"), "%s", err);
    cr_assert(write_bytes(path, "1,\"2\"\0\n", 7));
    cr_expect_eq(nn_csv_load(path, NULL, AG_F64, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "'\\0' after a closing quote"), "%s", err);
}

/* Issue 21: opening a FIFO for reading waited for a writer, forever. */
Test(csv, a_fifo_is_refused_before_reading, .init = make_dir, .fini = drop_dir, .timeout = 10)
{
    char fifo[700];
    fixture_path(fifo, sizeof fifo, dir, "pipe.csv");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    nn_dataset *ds = NULL;
    cr_expect_eq(nn_csv_load(fifo, NULL, AG_F64, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_csv_load: ") && strstr(err, "is a FIFO, not a regular file"), "%s", err);
    cr_expect_null(ds);
}

Test(csv, ragged_rows_name_both_lines, .init = make_dir, .fini = drop_dir)
{
    expect_error("1,2,3\n4,5,6\n7,8\n", NULL, AG_EIO, "line 3: ", "2 fields, but line 1 has 3");
    expect_error("x,y\n1,2\n3,4,5\n", &(nn_csv_options){.header = 1}, AG_EIO,
                 "line 3: ", "3 fields, but line 1 has 2");
    expect_error("\n\n1,2\n3\n", NULL, AG_EIO, "line 4: ", "1 fields, but line 3 has 2");
}

Test(csv, labels_must_be_non_negative_integers, .init = make_dir, .fini = drop_dir)
{
    nn_csv_options opt = {.ykind = NN_Y_LABELS, .y_column = 1};
    expect_error("1,0\n2,1.5\n", &opt, AG_EIO, "line 2, column 2: ", "'1.5' is not a class label");
    expect_error("1,0\n2,-1\n", &opt, AG_EIO, "line 2, column 2: ", "'-1' is not a class label");
}

Test(csv, structural_errors, .init = make_dir, .fini = drop_dir)
{
    expect_error("1,\"2\n", NULL, AG_EIO, "line 1, column 2: ", "the quote is never closed");
    expect_error("1,\"2\"x\n", NULL, AG_EIO, "line 1, column 2: ", "'x' after a closing quote");
    expect_error("", NULL, AG_EIO, "", "no data rows");
    expect_error("a,b\n\n", &(nn_csv_options){.header = 1}, AG_EIO, "", "no data rows");
    expect_error("1,2\n", &(nn_csv_options){.ykind = NN_Y_LABELS, .y_column = 2}, AG_EINVAL, "",
                 "y_column 2 is outside the 2 columns");
    expect_error("1,2\n", &(nn_csv_options){.ykind = NN_Y_LABELS, .y_column = -3}, AG_EINVAL, "",
                 "y_column -3 is outside the 2 columns");
    expect_error("1\n", &(nn_csv_options){.ykind = NN_Y_VALUES}, AG_EINVAL, "", "no feature column");
}

Test(csv, argument_errors, .init = make_dir, .fini = drop_dir)
{
    nn_dataset *ds;
    cr_expect_eq(nn_csv_load(path, NULL, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "cannot open: No such file"), "%s", err);
    cr_expect_eq(nn_csv_load(NULL, NULL, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EINVAL);
    cr_expect_eq(nn_csv_load(path, NULL, AG_F32, NULL, NULL, NULL, err, sizeof err), AG_EINVAL);
    cr_assert(write_text(path, "1\n"));
    cr_expect_eq(nn_csv_load(path, NULL, (ag_dtype)9, NULL, NULL, &ds, err, sizeof err), AG_EDTYPE);
    cr_expect_eq(
        nn_csv_load(path, &(nn_csv_options){.ykind = (nn_ykind)5}, AG_F32, NULL, NULL, &ds, err, sizeof err),
        AG_EINVAL);
    cr_expect_eq(nn_csv_load(dir, NULL, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "not a regular file"), "%s", err);
}

Test(csv, every_failed_allocation_is_clean, .init = make_dir, .fini = drop_dir)
{
    cr_assert(write_text(path, "a,b,c\n1,2,0\n3,4,1\n"));
    nn_csv_options opt = {.header = 1, .ykind = NN_Y_LABELS, .y_column = 2};
    for (long k = 1;; k++) {
        alloc_hooks h = hooks_failing_at(k);
        nn_dataset *ds;
        ag_status s = nn_csv_load(path, &opt, AG_F32, hook_alloc, &h, &ds, err, sizeof err);
        if (h.refused == 0) {
            cr_assert_eq(s, AG_OK, "%s", err);
            cr_expect_eq(nn_dataset_labels(ds)[1], 1);
            nn_dataset_free(ds);
            cr_expect_eq(h.live, 0);
            cr_expect_gt(k, 3);
            break;
        }
        cr_assert_eq(s, AG_ENOMEM, "request %ld: %s", k, err);
        cr_assert(strstr(err, "out of memory"), "%s", err);
        cr_assert_eq(h.live, 0);
        cr_assert_eq(h.bad_osize, 0);
    }
}
