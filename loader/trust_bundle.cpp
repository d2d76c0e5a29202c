#include "trust_bundle.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "pinfold/unique_fd.hpp"
#include "write_all.hpp"

namespace pinfold::loader {

namespace {

// create: a new file; fill/append: the file create_trust_bundle_files
// made, written in place (a sandbox may already have it bind-mounted).
enum class WriteMode { create, fill, append };

Result<void> write_file(const std::string& path, const std::string& text, WriteMode mode = WriteMode::create)
{
    // O_EXCL|O_NOFOLLOW: never write through something planted in the way
    // (between create and fill only pinfold's own user can write the
    // directory, and no command of the run has started yet).
    int flags = mode == WriteMode::create ? O_CREAT | O_EXCL : mode == WriteMode::fill ? O_TRUNC : O_APPEND;
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC | flags, 0644));
    if (fd.get() < 0)
        return fail_errno(mode == WriteMode::create ? "create " + path : "write " + path);
    if (auto written = write_all(fd.get(), text.data(), text.size(), path); !written)
        return written;
    ::fchmod(fd.get(), 0644);   // not narrowed by the umask: the sandbox's uid reads it
    return {};
}

// Bundles of runs that are gone (a SIGKILLed pinfold cannot clean up): a
// bundle exists only while its run holds /run/pinfold/<run>.lock, so one
// whose lock is missing or free is stale. Only certificates are lost.
void remove_stale_bundles(const std::filesystem::path& parent, const std::filesystem::path& own,
                          const std::string& lock_dir)
{
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(parent, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (!name.starts_with("run-") || it->path() == own)
            continue;
        std::string lock = lock_dir + "/" + name + ".lock";
        int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        bool held = fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0;
        if (fd >= 0)
            ::close(fd);
        if (!held) {
            std::error_code ignored;
            std::filesystem::remove_all(it->path(), ignored);
        }
    }
}

} // namespace

std::vector<std::string> TrustBundle::environment() const
{
    return environment(bundle_path, ca_path);
}

std::vector<std::string> TrustBundle::environment(std::string_view bundle_in_sandbox,
                                                  std::string_view ca_in_sandbox) const
{
    std::string bundle(bundle_in_sandbox);
    return {
        "SSL_CERT_FILE=" + bundle,
        "CURL_CA_BUNDLE=" + bundle,
        "REQUESTS_CA_BUNDLE=" + bundle,
        "GIT_SSL_CAINFO=" + bundle,
        // Node keeps its own roots and adds these; the run CA alone suffices.
        "NODE_EXTRA_CA_CERTS=" + std::string(ca_in_sandbox),
    };
}

TrustBundle plan_trust_bundle(const std::string& run_name, const std::string& parent)
{
    TrustBundle b;
    b.directory = parent + "/" + run_name;
    b.bundle_path = b.directory + "/ca-bundle.pem";
    b.ca_path = b.directory + "/run-ca.pem";
    return b;
}

Result<void> create_trust_bundle_files(const TrustBundle& bundle, const std::string& lock_dir,
                                       std::string_view system_bundle)
{
    std::filesystem::path dir(bundle.directory);
    if (::mkdir(dir.parent_path().c_str(), 0755) != 0 && errno != EEXIST)
        return fail_errno("create " + dir.parent_path().string());
    remove_stale_bundles(dir.parent_path(), dir, lock_dir);
    // A leftover of a crashed run with the same pid is replaced.
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (::mkdir(dir.c_str(), 0755) != 0)
        return fail_errno("create " + bundle.directory);
    ::chmod(dir.c_str(), 0755);
    // The roots go in now, off the path between the proxy's readiness and
    // the command's start; only the run CA is appended then.
    std::string roots;
    std::ifstream in{std::string(system_bundle), std::ios::binary};
    if (in) {
        std::ostringstream text;
        text << in.rdbuf();
        roots = text.str();
        if (!roots.empty() && roots.back() != '\n')
            roots += '\n';
    }
    if (auto r = write_file(bundle.ca_path, ""); !r)
        return r;
    return write_file(bundle.bundle_path, roots + "# pinfold run CA\n");
}

Result<void> fill_trust_bundle(const TrustBundle& bundle, const std::string& ca_pem)
{
    if (ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos ||
        ca_pem.find("PRIVATE KEY") != std::string::npos)
        return fail("the proxy reported no CA certificate (or more than a certificate)");
    if (auto r = write_file(bundle.ca_path, ca_pem, WriteMode::fill); !r)
        return r;
    return write_file(bundle.bundle_path, ca_pem, WriteMode::append);
}

Result<void> write_trust_bundle(const TrustBundle& bundle, const std::string& ca_pem, std::string_view system_bundle,
                                const std::string& lock_dir)
{
    if (ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos ||
        ca_pem.find("PRIVATE KEY") != std::string::npos)
        return fail("the proxy reported no CA certificate (or more than a certificate)");
    if (auto r = create_trust_bundle_files(bundle, lock_dir, system_bundle); !r)
        return r;
    return fill_trust_bundle(bundle, ca_pem);
}

void remove_trust_bundle(const TrustBundle& bundle) noexcept
{
    std::error_code ec;
    if (!bundle.directory.empty())
        std::filesystem::remove_all(bundle.directory, ec);
}

} // namespace pinfold::loader
