/* The SDK header must compile alone as strict C99 (see Makefile.am flags). */
#include <aos/plugin.h>
#include <stdio.h>

int main(void)
{
    struct aos_plugin p = {0};
    p.magic = AOS_PLUGIN_MAGIC;
    printf("1..1\nok 1 - aos/plugin.h compiles as C99 -pedantic (ABI %d.%d, descriptor %u bytes)\n",
           AOS_ABI_MAJOR, AOS_ABI_MINOR, (unsigned)sizeof p);
    return 0;
}
