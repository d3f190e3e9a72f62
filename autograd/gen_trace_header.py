#!/usr/bin/env python3
"""Writes autograd_trace.h from autograd.h: a locating macro per op.

Every function declared between the "ops" and "gradcheck" section rules of
autograd.h that returns ag_tensor * and takes the tape as 'ag_tape *t' first
is wrapped as
    #define ag_add(t, ...) ag_add(AG_HERE(t), __VA_ARGS__)
so that anomaly mode can name the caller's line. A new op declared there is
wrapped without anyone editing a list.

usage: gen_trace_header.py autograd.h OUTPUT
"""
import os
import re
import sys

HEAD = """\
/*
** autograd_trace.h: optional, for anomaly mode (ag_tape_set_anomaly).
** Generated at build time from autograd.h by autograd/gen_trace_header.py:
** do not edit. Include it after autograd.h in the files whose op calls you
** want located: each op then passes through ag_tape_here with the caller's
** __FILE__ and __LINE__, so an anomaly names the line that made the bad
** value:
**
**     #include "autograd.h"
**     #include "autograd_trace.h"
**     ...
**     ag_tape_set_anomaly(t, 1);
**     ag_tensor *y = ag_log(t, x);       // x holds a 0: y holds -inf
**     if (ag_tape_status(t) == AG_ENUMERIC)
**         puts(ag_tape_errmsg(t));       // "anomaly: log at train.c:42 (tape entry 0)
**                                        //  gave -inf at element 0 of its result [3]; ..."
**
** Each op becomes a function-like macro of the same name, which calls the
** real function (a macro never expands its own name again) and evaluates
** 't' once. Taking an op's address (&ag_add) still gives the function. Ops
** that other code calls for you (nn's layers and losses, which are built
** without this header) report the line of the last traced op before them.
** Storing the location costs a call and two stores per op, whether anomaly
** mode is on or not: leave the header out of release builds if that counts.
*/
#ifndef AUTOGRAD_TRACE_H
#define AUTOGRAD_TRACE_H

#include "autograd.h"

#define AG_HERE(t) ag_tape_here((t), __FILE__, __LINE__)

"""


def main():
    src, out = sys.argv[1], sys.argv[2]
    api = open(src).read()
    start = re.search(r"-+ ops \*/", api)
    end = re.search(r"-+ gradcheck \*/", api)
    if not start or not end or end.start() < start.end():
        sys.exit("gen_trace_header.py: autograd.h has no ops ... gradcheck section")
    names = re.findall(r"AG_API ag_tensor \*(ag_[a-z0-9_]+)\(ag_tape \*t,",
                       api[start.end():end.start()])
    if len(names) < 10:
        sys.exit(f"gen_trace_header.py: only {len(names)} ops found in autograd.h")
    width = max(len(n) for n in names) + len("(t, ...)") + 1
    body = "".join(f"#define {(n + '(t, ...)').ljust(width)}{n}(AG_HERE(t), __VA_ARGS__)\n"
                   for n in names)
    text = HEAD + body + "\n#endif\n"
    if not os.path.exists(out) or open(out).read() != text:
        with open(out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
