--- `:checkhealth msa_lsp`: Neovim version, the server command, the running client and its last
--- status, and which inline completion path is in use.
local M = {}

function M.check()
  local health = vim.health
  local plugin = require("msa_lsp")
  health.start("msa_lsp")
  if vim.fn.has("nvim-0.11") == 1 then
    health.ok("Neovim " .. tostring(vim.version()))
  else
    health.error("Neovim 0.11 or newer is needed (vim.lsp.config / vim.lsp.enable)")
  end
  if not plugin.config then
    health.error('setup() was not called: add require("msa_lsp").setup({}) to your config')
    return
  end
  local exe = plugin.config.cmd[1]
  if vim.fn.executable(exe) == 1 then
    health.ok(("server command: %s (%s)"):format(table.concat(plugin.config.cmd, " "), vim.fn.exepath(exe)))
  else
    health.error(("server command not found: %s"):format(exe),
      { "install msa-lsp (pipx install msa-lsp) or pass cmd = { '/path/to/msa-lsp', 'serve' } to setup()" })
  end
  local client = plugin.client()
  if client then
    health.ok(("client %d attached, root %s"):format(client.id, client.root_dir or "?"))
    if client:supports_method("textDocument/inlineCompletion") then
      health.ok("server offers inline completion")
    else
      health.warn("server does not offer inline completion")
    end
  else
    health.info("no msa_lsp client running in this session (open a supported file)")
  end
  if vim.lsp.inline_completion and plugin.config.inline.builtin ~= false then
    health.ok("ghost text: vim.lsp.inline_completion (built in)")
  else
    health.ok("ghost text: msa_lsp.inline (own extmarks; Neovim " .. tostring(vim.version()) .. ")")
  end
  local status = require("msa_lsp.status")
  if status.latest then
    health.info("status: " .. status.format(status.latest))
    if status.latest.worker and status.latest.worker.state == "error" then
      health.warn("worker error: " .. (status.latest.worker.message or ""))
    end
  end
end

return M
