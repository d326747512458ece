import { runSimCli } from "./cli.ts";

if (import.meta.main) process.exit(await runSimCli(process.argv.slice(2)));
