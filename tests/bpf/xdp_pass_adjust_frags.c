// SPDX-License-Identifier: GPL-2.0
/* xdp_pass_adjust as a multi-buffer program (SEC("xdp.frags"), Linux 5.18+): the one
 * kind of program a driver may accept at an MTU above one page. */
#define XDP_FRAGS 1
#include "xdp_pass_adjust.c"
