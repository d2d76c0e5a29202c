// The global cgroup level of the cgroup2 mount, from the kernel's ancestor
// ids and the namespace-relative paths (container mode's cgroup namespace).
#include <doctest/doctest.h>

#include "cgroup_level.hpp"

using pinfold::loader::mount_level_from;

TEST_CASE("host without a cgroup namespace: the mount is the global root")
{
    unsigned long long ids[8] = {1, 20, 30, 0};
    auto level = mount_level_from(ids, 8, "/system.slice/ssh.service", "/");
    REQUIRE(level);
    CHECK(*level == 0);
}

TEST_CASE("container: the namespace root sits at the caller's global level")
{
    // Podman: /machine.slice/libpod-<id>.scope, seen as "/" inside.
    unsigned long long ids[8] = {1, 20, 30, 0};
    auto level = mount_level_from(ids, 8, "/", "/");
    REQUIRE(level);
    CHECK(*level == 2);
    // A process one level below the namespace root.
    unsigned long long deeper[8] = {1, 20, 30, 40, 0};
    level = mount_level_from(deeper, 8, "/job", "/");
    REQUIRE(level);
    CHECK(*level == 2);
}

TEST_CASE("a cgroup2 mount of a subtree adds its depth")
{
    unsigned long long ids[8] = {1, 20, 30, 0};
    auto level = mount_level_from(ids, 8, "/a/b", "/a");
    REQUIRE(level);
    CHECK(*level == 1);
}

TEST_CASE("inconsistent views are refused, not guessed")
{
    unsigned long long ids[8] = {1, 20, 0};
    CHECK_FALSE(mount_level_from(ids, 8, "/../other", "/"));      // outside the namespace
    CHECK_FALSE(mount_level_from(ids, 8, "/a/b/c", "/"));         // deeper than the kernel says
    unsigned long long full[3] = {1, 2, 3};
    CHECK_FALSE(mount_level_from(full, 3, "/", "/"));             // tree deeper than the probe
    unsigned long long none[3] = {0, 0, 0};
    CHECK_FALSE(mount_level_from(none, 3, "/", "/"));
}
