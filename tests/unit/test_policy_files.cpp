// Every shipped example policy must load, compile and mean what its
// comments say.

#include <doctest/doctest.h>

#include <filesystem>
#include <map>

#include "policy/policy.hpp"

using namespace pinfold::policy;

namespace {

std::filesystem::path source_dir()
{
#ifdef PINFOLD_SOURCE_DIR
    return PINFOLD_SOURCE_DIR;
#else
    // Until tests/CMakeLists.txt defines it: this file is tests/unit/*.cpp.
    return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
#endif
}

std::map<std::string, CompiledPolicy> load_all()
{
    std::map<std::string, CompiledPolicy> out;
    for (const auto& entry : std::filesystem::directory_iterator(source_dir() / "policies")) {
        if (entry.path().extension() != ".yaml")
            continue;
        auto policy = load_policy_file(entry.path().string());
        REQUIRE_MESSAGE(policy.has_value(), policy.error().what());
        auto compiled = CompiledPolicy::compile(std::move(*policy));
        REQUIRE_MESSAGE(compiled.has_value(), compiled.error().what());
        out.emplace(entry.path().stem().string(), std::move(*compiled));
    }
    return out;
}

bool allows(const CompiledPolicy& policy, std::string_view method, std::string_view url, ExeIdentity exe = {})
{
    // url: "host/path?query", https on 443.
    std::size_t slash = url.find('/');
    auto target = normalize_target(url.substr(slash));
    REQUIRE_MESSAGE(target.has_value(), target.error().message);
    Request request{"https", url.substr(0, slash), 443, method, target->path};
    request.exe = exe;
    return policy.decide(request).allowed;
}

} // namespace

TEST_CASE("policies/: every example loads")
{
    auto policies = load_all();
    for (const char* name : {"github-read", "triage", "review", "code", "fix"})
        CHECK_MESSAGE(policies.contains(name), name);
    for (const auto& [file, policy] : policies) {
        CAPTURE(file);
        CHECK(policy.policy().name == file);
        CHECK_FALSE(describe(policy.policy()).empty());
    }
}

TEST_CASE("policies/: the examples decide as documented")
{
    auto policies = load_all();

    const CompiledPolicy& read = policies.at("github-read");
    // binaries: [gh, curl], resolved against PATH; curl is a test dependency.
    REQUIRE(read.binaries().contains("curl"));
    REQUIRE_FALSE(read.binaries().at("curl").empty());
    ExeIdentity curl = read.binaries().at("curl").front().id;
    CHECK(allows(read, "GET", "api.github.com/repos/o/r/issues/1", curl));
    CHECK(allows(read, "GET", "api.github.com/repos/o/r/issues/1/comments?per_page=100", curl));
    CHECK_FALSE(allows(read, "GET", "api.github.com/repos/o/r/issues/1"));
    CHECK_FALSE(allows(read, "GET", "api.github.com/repos/o/r/issues/1", ExeIdentity{curl.dev + 1, curl.ino}));
    CHECK_FALSE(allows(read, "POST", "api.github.com/repos/o/r/issues/1/comments"));
    CHECK_FALSE(allows(read, "GET", "api.github.com/repos/o/r/pulls/1"));
    CHECK_FALSE(allows(read, "GET", "api.github.com/repos/o/r/issues/1/../../pulls/1"));
    CHECK_FALSE(allows(read, "GET", "github.com/repos/o/r/issues/1"));

    const CompiledPolicy& triage = policies.at("triage");
    CHECK(triage.policy().warnings.empty());
    CHECK(allows(triage, "GET", "api.github.com/repos/o/r/issues"));
    CHECK(allows(triage, "POST", "api.github.com/repos/o/r/issues/7/labels"));
    CHECK(allows(triage, "DELETE", "api.github.com/repos/o/r/issues/7/labels/bug"));
    CHECK(allows(triage, "POST", "api.github.com/repos/o/r/issues/7/comments"));
    CHECK_FALSE(allows(triage, "PATCH", "api.github.com/repos/o/r/issues/7"));
    CHECK_FALSE(allows(triage, "PUT", "api.github.com/repos/o/r/issues/7/lock"));
    CHECK_FALSE(allows(triage, "POST", "api.github.com/graphql"));

    const CompiledPolicy& review = policies.at("review");
    CHECK(allows(review, "GET", "api.github.com/repos/o/r/pulls/3/files"));
    CHECK(allows(review, "POST", "api.github.com/repos/o/r/pulls/3/reviews"));
    CHECK(allows(review, "GET", "github.com/o/r/pull/3.diff"));
    CHECK_FALSE(allows(review, "PUT", "api.github.com/repos/o/r/pulls/3/merge"));
    CHECK_FALSE(allows(review, "GET", "api.github.com/repos/o/r/pulls/3/merge"));

    const CompiledPolicy& code = policies.at("code");
    CHECK(allows(code, "GET", "github.com/o/r.git/info/refs?service=git-upload-pack"));
    CHECK(allows(code, "POST", "github.com/o/r.git/git-upload-pack"));
    CHECK(allows(code, "POST", "github.com/o/r.git/git-receive-pack"));
    CHECK(allows(code, "POST", "api.github.com/repos/o/r/pulls"));
    CHECK_FALSE(allows(code, "DELETE", "api.github.com/repos/o/r/git/refs/heads/main"));
    CHECK_FALSE(allows(code, "POST", "github.com/o/r/git-receive-pack"));

    const CompiledPolicy& fix = policies.at("fix");
    CHECK(allows(fix, "GET", "api.github.com/repos/o/r/issues/5/comments"));
    CHECK(allows(fix, "POST", "api.github.com/repos/o/r/issues/5/comments"));
    CHECK(allows(fix, "GET", "api.github.com/repos/o/r/commits/abc123/check-runs"));
    CHECK(allows(fix, "POST", "github.com/o/r.git/git-receive-pack"));
    CHECK_FALSE(allows(fix, "PUT", "api.github.com/repos/o/r/pulls/9/merge"));
    CHECK_FALSE(allows(fix, "POST", "api.github.com/repos/o/r/issues/5/labels"));
}

TEST_CASE("load_policy_file: missing file and non-regular file")
{
    auto missing = load_policy_file(source_dir() / "policies" / "does-not-exist.yaml");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == ENOENT);
    auto directory = load_policy_file(source_dir() / "policies");
    REQUIRE_FALSE(directory.has_value());
    CHECK(directory.error().message.ends_with("is not a regular file"));
}
