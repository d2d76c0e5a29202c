#pragma once
// Compiled-in layout checks of the BPF ABI (Tetragon's alignchecker idea):
// if pinfold_abi.h changes shape, the C++ side stops compiling until it is
// looked at.

#include <cstddef>
#include "pinfold_abi.h"

static_assert(sizeof(pf_sandbox_config) == 16);
static_assert(offsetof(pf_sandbox_config, proxy_port) == 8);
static_assert(offsetof(pf_sandbox_config, dns_port) == 12);

static_assert(sizeof(pf_origin) == 112);
static_assert(offsetof(pf_origin, orig_port) == 16);
static_assert(offsetof(pf_origin, orig_family) == 18);
static_assert(offsetof(pf_origin, proxy_port) == 20);
static_assert(offsetof(pf_origin, pid) == 24);
static_assert(offsetof(pf_origin, uid) == 32);
static_assert(offsetof(pf_origin, cgroup_id) == 40);
static_assert(offsetof(pf_origin, sandbox_id) == 48);
static_assert(offsetof(pf_origin, socket_cookie) == 56);
static_assert(offsetof(pf_origin, exe_dev) == 64);
static_assert(offsetof(pf_origin, exe_ino) == 72);
static_assert(offsetof(pf_origin, exe_name) == 80);

static_assert(sizeof(pf_flow_key) == 24);
static_assert(offsetof(pf_flow_key, port) == 16);

static_assert(sizeof(pf_event) == 56);
static_assert(offsetof(pf_event, sandbox_id) == 16);
static_assert(offsetof(pf_event, addr) == 32);
static_assert(offsetof(pf_event, port) == 48);
static_assert(offsetof(pf_event, protocol) == 54);
