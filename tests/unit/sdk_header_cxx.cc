// The SDK header must compile as C++ (see Makefile.am flags).
#include <aos/plugin.h>
#include <cstdio>

int main()
{
    aos_plugin p = aos_plugin();
    p.magic = AOS_PLUGIN_MAGIC;
    std::printf("1..1\nok 1 - aos/plugin.h compiles as C++11 -pedantic (ABI %d.%d, magic %08x)\n",
                AOS_ABI_MAJOR, AOS_ABI_MINOR, (unsigned)p.magic);
    return 0;
}
