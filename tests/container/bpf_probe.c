// Creates one BPF array map and prints the outcome: "ok" or the errno name.
// Built statically on the host and bind-mounted into a container, so the
// container's seccomp profile and capabilities decide, not its userland.
#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 1;
    long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    if (fd < 0) {
        printf("%s\n", errno == EPERM ? "EPERM" : strerror(errno));
        return 1;
    }
    printf("ok\n");
    return 0;
}
