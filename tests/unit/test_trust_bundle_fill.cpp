// The trust bundle made in two steps for a sandbox built while the proxy
// makes its CA: the files first (roots only; the sandbox binds them), then
// the run CA written into the same files.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "trust_bundle.hpp"

using namespace pinfold::loader;
namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& p)
{
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

ino_t inode_of(const std::string& p)
{
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_ino;
}

} // namespace

TEST_CASE("trust bundle in two steps: created with the roots and readable, the run CA added in place")
{
    char tmpl[] = "/tmp/pinfold-trust-fill-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    fs::path root(tmpl);
    fs::path roots = root / "system.pem";
    std::ofstream(roots) << "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----";
    fs::create_directory(root / "locks");
    const std::string ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    TrustBundle b = plan_trust_bundle("run-7", (root / "trust").string());
    const std::string roots_part = "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n# pinfold run CA\n";
    REQUIRE(create_trust_bundle_files(b, (root / "locks").string(), roots.string()));
    CHECK(read_all(b.bundle_path) == roots_part);
    CHECK(read_all(b.ca_path).empty());
    struct stat st {};
    REQUIRE(::stat(b.bundle_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);
    ino_t bundle_inode = inode_of(b.bundle_path);
    ino_t ca_inode = inode_of(b.ca_path);

    // Anything but certificates is refused, and the files stay as they are.
    CHECK_FALSE(fill_trust_bundle(b, ca_pem + "-----BEGIN PRIVATE KEY-----\n"));
    CHECK(read_all(b.bundle_path) == roots_part);
    CHECK(read_all(b.ca_path).empty());

    REQUIRE(fill_trust_bundle(b, ca_pem));
    // The same inodes: a bind mount of the empty file shows the content.
    CHECK(inode_of(b.bundle_path) == bundle_inode);
    CHECK(inode_of(b.ca_path) == ca_inode);
    CHECK(read_all(b.ca_path) == ca_pem);
    CHECK(read_all(b.bundle_path) == roots_part + ca_pem);

    // A second create (a crashed run with the same pid) starts afresh.
    REQUIRE(create_trust_bundle_files(b, (root / "locks").string(), roots.string()));
    CHECK(read_all(b.bundle_path) == roots_part);
    CHECK(read_all(b.ca_path).empty());
    remove_trust_bundle(b);
    CHECK_FALSE(fs::exists(b.directory));
    fs::remove_all(root);
}
