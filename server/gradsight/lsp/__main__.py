from gradsight.lsp import run_stdio

run_stdio()
