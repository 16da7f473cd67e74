import DevifRegistrySQLite
print("todo")
