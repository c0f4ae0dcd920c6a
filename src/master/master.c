#include "master/master.h"
int master_cmd_run(int argc, char **argv) { (void)argc; (void)argv; return 2; }
int master_cmd_check(int argc, char **argv) { (void)argc; (void)argv; return 2; }
int master_cmd_demo(int argc, char **argv) { (void)argc; (void)argv; return 2; }
