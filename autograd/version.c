/*
** version.c: the library's version at run time, for programs that must know
** which build of the shared library they were loaded with.
*/
#include "autograd.h"

const char *ag_version(void) { return AG_VERSION_STRING; }

int ag_version_number(void) { return AG_VERSION_NUMBER; }
