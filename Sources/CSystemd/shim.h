#ifndef DRUID_SYNC_CSYSTEMD_SHIM_H
#define DRUID_SYNC_CSYSTEMD_SHIM_H

#include <systemd/sd-daemon.h>

#endif
