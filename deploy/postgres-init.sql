-- One database per node of the compose network (the ledger of each node is its own).
CREATE DATABASE coral_a;
CREATE DATABASE coral_b;
CREATE DATABASE coral_c;
