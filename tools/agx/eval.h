/*
** eval.h: records a parsed agx program (parse.h) on an autograd tape.
*/
#ifndef AGX_EVAL_H
#define AGX_EVAL_H

#include "autograd.h"
#include "parse.h"

/* Records 'p' on 't' in f64 and returns its output (the last statement's
** value), or the tape's nil tensor on error (see ag_tape_status).
** values[i] is the value of name i when name i is a variable; variables
** become leaves named after them that require grad when 'grad' is set.
** A bound name names its statement's value, unless that value already has a
** name (as in 'b = a'). When 'named' is not NULL, named[i] receives the
** tensor of name i. Everything lives on the tape. */
ag_tensor *agx_record(ag_tape *t, const agx_program *p, const double *values, int grad,
                      ag_tensor **named);

/* Records 'p' on 't' with variable i taken from inputs[i], a tensor of t
** (the entries of bound names are not read): for a driver's callback,
** which gets its inputs made. Returns the output, or nil on error. */
ag_tensor *agx_record_inputs(ag_tape *t, const agx_program *p, ag_tensor *const *inputs);

/* The program's value for 'values', computed on 't' after a reset, without
** gradients; NaN when the tape fails. */
double agx_value(ag_tape *t, const agx_program *p, const double *values);

#endif
