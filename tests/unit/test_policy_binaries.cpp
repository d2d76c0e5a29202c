// `binaries:` entries resolved to (st_dev, st_ino) identities, and rules
// matched by identity: names against PATH, globs, symlinks, copies, and a
// reload after a binary was replaced on disk.

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "policy/binaries.hpp"
#include "policy/policy.hpp"

using namespace pinfold::policy;
namespace fs = std::filesystem;

namespace {

// A scratch tree under /tmp, removed at scope exit.
class ScratchDir {
public:
    ScratchDir()
    {
        std::string templ = (fs::temp_directory_path() / "pinfold-binaries-XXXXXX").string();
        REQUIRE(::mkdtemp(templ.data()) != nullptr);
        path_ = templ;
    }
    ~ScratchDir()
    {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    [[nodiscard]] std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }
    [[nodiscard]] std::string str() const { return path_.string(); }

    std::string file(const std::string& rel, const std::string& content = "#!/bin/sh\n") const
    {
        fs::path p = path_ / rel;
        fs::create_directories(p.parent_path());
        std::ofstream(p) << content;
        fs::permissions(p, fs::perms::owner_all);
        return p.string();
    }

private:
    fs::path path_;
};

ExeIdentity id_of(const std::string& path)
{
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return ExeIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

std::vector<std::string> paths_of(const std::vector<ResolvedBinary>& files)
{
    std::vector<std::string> out;
    for (const auto& f : files)
        out.push_back(f.path);
    return out;
}

std::vector<ResolvedBinary> resolve(std::string_view entry, const BinarySearch& search)
{
    auto r = resolve_binary(entry, search);
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    return *r;
}

Policy parse(const std::string& yaml)
{
    auto policy = parse_policy(yaml, "b.yaml");
    REQUIRE_MESSAGE(policy.has_value(), policy.error().message);
    return *policy;
}

CompiledPolicy compile_with(const std::string& yaml, const BinarySearch& search,
                            std::vector<std::string>* warnings = nullptr)
{
    Policy policy = parse(yaml);
    std::vector<std::string> scratch;
    auto table = resolve_policy_binaries(policy, search, warnings ? *warnings : scratch);
    REQUIRE_MESSAGE(table.has_value(), table.error().message);
    auto compiled = CompiledPolicy::compile(std::move(policy), std::move(*table));
    REQUIRE_MESSAGE(compiled.has_value(), compiled.error().message);
    return std::move(*compiled);
}

Decision decide_as(const CompiledPolicy& policy, ExeIdentity exe, std::string_view name = "x")
{
    Request request{"http", "h.example", 80, "GET", "/a"};
    request.exe = exe;
    request.exe_name = name;
    return policy.decide(request);
}

constexpr const char* tool_policy = R"(name: b
rules:
  - name: tool-only
    endpoint: http://h.example/**
    binaries: [tool]
)";

} // namespace

TEST_CASE("identity_text is stat's %d:%i")
{
    CHECK(identity_text(ExeIdentity{65024, 10977283}) == "65024:10977283");
    CHECK_FALSE(ExeIdentity{}.known());
    CHECK(ExeIdentity{0, 5}.known());
}

TEST_CASE("PATH is split in order; relative entries are not searched")
{
    auto search = search_from_path_variable("/usr/local/bin::./bin:/usr/bin:relative");
    CHECK(search.path_dirs == std::vector<std::string>{"/usr/local/bin", "/usr/bin"});
    CHECK(search_from_path_variable("").path_dirs.empty());
}

TEST_CASE("an absolute path resolves to its file; symlinks are followed; missing is empty")
{
    ScratchDir dir;
    std::string real = dir.file("opt/tool");
    fs::create_symlink(real, dir / "link");
    auto direct = resolve(real, {});
    REQUIRE(direct.size() == 1);
    CHECK(direct[0].id == id_of(real));
    auto linked = resolve(dir / "link", {});
    REQUIRE(linked.size() == 1);
    CHECK(linked[0].path == dir / "link");
    CHECK(linked[0].id == id_of(real));
    CHECK(resolve(dir / "missing", {}).empty());
    fs::create_symlink(dir / "nowhere", dir / "dangling");
    CHECK(resolve(dir / "dangling", {}).empty());
    // A directory is not a program.
    CHECK(resolve(dir / "opt", {}).empty());
}

TEST_CASE("a name resolves to the first match in PATH, as exec would find it")
{
    ScratchDir dir;
    std::string first = dir.file("a/tool");
    dir.file("b/tool", "#!/bin/sh\n# another\n");
    fs::create_directories(dir / "empty");
    fs::create_directories(dir / "c/tool");   // a directory named like the program
    BinarySearch search{{dir / "empty", dir / "c", dir / "a", dir / "b"}};
    auto files = resolve("tool", search);
    REQUIRE(files.size() == 1);
    CHECK(files[0].path == first);
    CHECK(files[0].id == id_of(first));
    CHECK(resolve("absent", search).empty());
}

TEST_CASE("globs: '**/x' under every PATH directory, absolute globs from their literal prefix")
{
    ScratchDir dir;
    std::string top = dir.file("bin/gh");
    std::string deep = dir.file("bin/sub/deeper/gh");
    dir.file("bin/ghx");
    dir.file("other/gh");
    std::string opt1 = dir.file("opt/v1/bin/tool");
    std::string opt2 = dir.file("opt/v2/bin/tool");
    dir.file("opt/v2/lib/tool");
    BinarySearch search{{dir / "bin"}};

    CHECK(paths_of(resolve("**/gh", search)) == std::vector<std::string>{top, deep});
    CHECK(paths_of(resolve(dir / "opt/*/bin/tool", search)) == std::vector<std::string>{opt1, opt2});
    CHECK(paths_of(resolve(dir / "opt/**/tool", search)) ==
          std::vector<std::string>{opt1, opt2, dir / "opt/v2/lib/tool"});
    CHECK(paths_of(resolve(dir / "opt/v?/bin/tool", search)) == std::vector<std::string>{opt1, opt2});
    CHECK(resolve("**/nothing", search).empty());
}

TEST_CASE("glob walks do not follow directory symlinks (no loops), but matched file symlinks are followed")
{
    ScratchDir dir;
    std::string real = dir.file("tree/real/tool");
    fs::create_directory_symlink(dir / "tree", dir / "tree/loop");
    fs::create_symlink(real, dir / "tree/alias");
    auto files = resolve(dir / "tree/**/*", {});
    std::vector<std::string> expected{dir / "tree/alias", real};
    CHECK(paths_of(files) == expected);
    CHECK(files[0].id == files[1].id);
}

TEST_CASE("rules with binaries match by identity: the file, a symlink to it, never a copy")
{
    ScratchDir dir;
    std::string tool = dir.file("bin/tool");
    fs::create_directories(dir / "ws");
    fs::create_symlink(tool, dir / "ws/alias");
    fs::copy_file(tool, dir / "ws/copy");
    fs::copy_file(tool, dir / "ws/tool");   // same name, other file
    auto policy = compile_with(tool_policy, BinarySearch{{dir / "bin"}});

    CHECK(decide_as(policy, id_of(tool)).allowed);
    CHECK(decide_as(policy, id_of(dir / "ws/alias")).allowed);
    Decision copy = decide_as(policy, id_of(dir / "ws/copy"), "copy");
    CHECK_FALSE(copy.allowed);
    CHECK(copy.rule_name.empty());
    CHECK(copy.reason == "executable copy (" + identity_text(id_of(dir / "ws/copy")) +
                             ") is not one of the binaries of rule 'tool-only' [tool]; no other rule matched");
    CHECK_FALSE(decide_as(policy, id_of(dir / "ws/tool"), "tool").allowed);

    Decision uncaptured = decide_as(policy, ExeIdentity{}, "");
    CHECK_FALSE(uncaptured.allowed);
    CHECK(uncaptured.reason.find("identity not captured") != std::string::npos);

    REQUIRE(policy.binary_of(id_of(tool)) != nullptr);
    CHECK(policy.binary_of(id_of(tool))->path == tool);
    CHECK(policy.binary_of(id_of(dir / "ws/copy")) == nullptr);
}

TEST_CASE("a binaries mismatch falls through to later rules; a rule without binaries admits anyone")
{
    ScratchDir dir;
    std::string tool = dir.file("bin/tool");
    std::string other = dir.file("bin/other");
    auto policy = compile_with(R"(name: b
rules:
  - name: tool-writes
    endpoint: http://h.example/**
    binaries: [tool]
  - name: nobody-else
    endpoint: http://h.example/a
    action: deny
  - name: anyone-reads
    endpoint: http://h.example/**
    methods: [GET]
)",
                               BinarySearch{{dir / "bin"}});
    CHECK(decide_as(policy, id_of(tool)).rule_name == "tool-writes");
    Decision d = decide_as(policy, id_of(other), "other");
    CHECK_FALSE(d.allowed);
    CHECK(d.rule_name == "nobody-else");
    CHECK(d.reason.starts_with("executable other ("));
    CHECK(d.reason.find("; rule 'nobody-else' denies GET http://h.example/a") != std::string::npos);

    Request read{"http", "h.example", 80, "GET", "/b"};
    read.exe = id_of(other);
    CHECK(policy.decide(read).rule_name == "anyone-reads");
    // Without any captured identity, rules without binaries still apply.
    read.exe = {};
    CHECK(policy.decide(read).allowed);
}

TEST_CASE("an entry that matches nothing warns and its rule admits no binary through it")
{
    ScratchDir dir;
    std::vector<std::string> warnings;
    auto policy = compile_with(tool_policy, BinarySearch{{dir.str()}}, &warnings);
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0] == "b.yaml:3: rule 'tool-only': binaries entry 'tool' matches no file (searched PATH); "
                         "no process can use this rule through it");
    CHECK_FALSE(decide_as(policy, ExeIdentity{1, 2}).allowed);
}

TEST_CASE("compile refuses an entry missing from the table")
{
    Policy policy = parse(tool_policy);
    auto compiled = CompiledPolicy::compile(std::move(policy), BinaryTable{});
    REQUIRE_FALSE(compiled.has_value());
    CHECK(compiled.error().message == "b.yaml:3: rule 'tool-only': binaries entry 'tool' was not resolved");
}

TEST_CASE("reload after a binary was replaced on disk: the new file matches, the old one no longer does")
{
    ScratchDir dir;
    std::string tool = dir.file("bin/tool", "#!/bin/sh\necho v1\n");
    BinarySearch search{{dir / "bin"}};
    ExeIdentity v1 = id_of(tool);
    auto before = compile_with(tool_policy, search);
    CHECK(decide_as(before, v1).allowed);

    // Package managers replace a binary by renaming a new file over it: a
    // new inode. (The old one stays alive while v1 is still open.)
    std::ifstream keep_v1_alive(tool);
    dir.file("bin/tool.new", "#!/bin/sh\necho v2\n");
    fs::rename(dir / "bin/tool.new", tool);
    ExeIdentity v2 = id_of(tool);
    REQUIRE(v1 != v2);

    // The policy compiled before still holds what was resolved then...
    CHECK(decide_as(before, v1).allowed);
    CHECK_FALSE(decide_as(before, v2).allowed);
    // ...a reload resolves again.
    auto after = compile_with(tool_policy, search);
    CHECK(decide_as(after, v2).allowed);
    CHECK_FALSE(decide_as(after, v1).allowed);
}

TEST_CASE("the binary table survives the trip from loader to proxy; garbage is refused")
{
    BinaryTable table;
    table["curl"] = {ResolvedBinary{"/usr/bin/curl", ExeIdentity{65024, 10977283}}};
    table["**/gh"] = {};
    table["/opt/x"] = {ResolvedBinary{"/opt/x", ExeIdentity{1, 2}}, ResolvedBinary{"/opt/\"y\"", ExeIdentity{3, 4}}};
    auto back = parse_binary_table(serialize_binary_table(table));
    REQUIRE_MESSAGE(back.has_value(), back.error().message);
    CHECK(*back == table);

    CHECK_FALSE(parse_binary_table("").has_value());
    CHECK_FALSE(parse_binary_table("[]").has_value());
    CHECK_FALSE(parse_binary_table(R"({"curl": {}})").has_value());
    CHECK_FALSE(parse_binary_table(R"({"curl": [{"path": "/x", "dev": -1, "ino": 2}]})").has_value());
    CHECK_FALSE(parse_binary_table(R"({"curl": [{"path": "/x", "dev": 1}]})").has_value());
}

TEST_CASE("compile(Policy) resolves against this process's PATH")
{
    ScratchDir dir;
    std::string tool = dir.file("bin/tool");
    const char* old = std::getenv("PATH");
    std::string saved = old ? old : "";
    ::setenv("PATH", (dir / "bin").c_str(), 1);
    auto compiled = CompiledPolicy::compile(parse(tool_policy));
    ::setenv("PATH", saved.c_str(), 1);
    REQUIRE_MESSAGE(compiled.has_value(), compiled.error().message);
    CHECK(decide_as(*compiled, id_of(tool)).allowed);
    REQUIRE(compiled->binaries().contains("tool"));
}
