// Trust injection files: what the sandbox gets (certificates only, readable),
// the environment entries, the cleanup of bundles of dead runs, and the
// bundle made in two steps for a sandbox built while the proxy makes its CA
// (the files first, roots only, for the sandbox to bind; then the run CA
// written into the same files).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "trust_bundle.hpp"

using namespace pinfold::loader;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p)
{
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

const std::string ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

ino_t inode_of(const std::string& p)
{
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_ino;
}

} // namespace

TEST_CASE("trust bundle: roots + run CA, readable, environment, stale runs removed")
{
    char tmpl[] = "/tmp/pinfold-trust-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    fs::path root(tmpl);
    fs::path roots = root / "system.pem";
    std::ofstream(roots) << "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----";
    fs::path locks = root / "locks";
    fs::create_directory(locks);
    fs::path parent = root / "trust";
    fs::create_directories(parent / "run-1");            // no lock at all: stale
    fs::create_directories(parent / "run-2");            // lock held: alive
    int held = ::open((locks / "run-2.lock").c_str(), O_RDWR | O_CREAT, 0600);
    REQUIRE(held >= 0);
    REQUIRE(::flock(held, LOCK_EX) == 0);

    TrustBundle b = plan_trust_bundle("run-3", parent.string());
    CHECK(b.bundle_path == (parent / "run-3" / "ca-bundle.pem").string());
    REQUIRE(write_trust_bundle(b, ca_pem, roots.string(), locks.string()));
    CHECK(slurp(b.bundle_path) == "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n"
                                  "# pinfold run CA\n" + ca_pem);
    CHECK(slurp(b.ca_path) == ca_pem);
    struct stat st {};
    REQUIRE(::stat(b.bundle_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);
    CHECK_FALSE(fs::exists(parent / "run-1"));
    CHECK(fs::exists(parent / "run-2"));

    auto env = b.environment();
    CHECK(std::find(env.begin(), env.end(), "SSL_CERT_FILE=" + b.bundle_path) != env.end());
    CHECK(std::find(env.begin(), env.end(), "NODE_EXTRA_CA_CERTS=" + b.ca_path) != env.end());
    for (const char* name : {"CURL_CA_BUNDLE=", "REQUESTS_CA_BUNDLE=", "GIT_SSL_CAINFO="})
        CHECK(std::find(env.begin(), env.end(), std::string(name) + b.bundle_path) != env.end());
    auto inside = b.environment("/etc/ssl/certs/ca-certificates.crt", "/x/ca.pem");
    CHECK(inside[0] == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt");

    // Anything but certificates is refused, and nothing is written.
    TrustBundle bad = plan_trust_bundle("run-4", parent.string());
    CHECK_FALSE(write_trust_bundle(bad, ca_pem + "-----BEGIN PRIVATE KEY-----\n", roots.string(), locks.string()));
    CHECK_FALSE(write_trust_bundle(bad, "", roots.string(), locks.string()));
    CHECK_FALSE(fs::exists(parent / "run-4"));

    {
        WrittenTrustBundle owned(b);
    }
    CHECK_FALSE(fs::exists(parent / "run-3"));
    ::close(held);
    fs::remove_all(root);
}

TEST_CASE("trust bundle in two steps: created with the roots and readable, the run CA added in place")
{
    char tmpl[] = "/tmp/pinfold-trust-fill-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    fs::path root(tmpl);
    fs::path roots = root / "system.pem";
    std::ofstream(roots) << "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----";
    fs::create_directory(root / "locks");

    TrustBundle b = plan_trust_bundle("run-7", (root / "trust").string());
    const std::string roots_part = "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n# pinfold run CA\n";
    REQUIRE(create_trust_bundle_files(b, (root / "locks").string(), roots.string()));
    CHECK(slurp(b.bundle_path) == roots_part);
    CHECK(slurp(b.ca_path).empty());
    struct stat st {};
    REQUIRE(::stat(b.bundle_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);
    ino_t bundle_inode = inode_of(b.bundle_path);
    ino_t ca_inode = inode_of(b.ca_path);

    // Anything but certificates is refused, and the files stay as they are.
    CHECK_FALSE(fill_trust_bundle(b, ca_pem + "-----BEGIN PRIVATE KEY-----\n"));
    CHECK(slurp(b.bundle_path) == roots_part);
    CHECK(slurp(b.ca_path).empty());

    REQUIRE(fill_trust_bundle(b, ca_pem));
    // The same inodes: a bind mount of the empty file shows the content.
    CHECK(inode_of(b.bundle_path) == bundle_inode);
    CHECK(inode_of(b.ca_path) == ca_inode);
    CHECK(slurp(b.ca_path) == ca_pem);
    CHECK(slurp(b.bundle_path) == roots_part + ca_pem);

    // A second create (a crashed run with the same pid) starts afresh.
    REQUIRE(create_trust_bundle_files(b, (root / "locks").string(), roots.string()));
    CHECK(slurp(b.bundle_path) == roots_part);
    CHECK(slurp(b.ca_path).empty());
    remove_trust_bundle(b);
    CHECK_FALSE(fs::exists(b.directory));
    fs::remove_all(root);
}
